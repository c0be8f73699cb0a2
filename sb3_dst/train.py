"""``python -m sb3_dst.train``: rl-zoo3's ``train`` with sb3-dst's algorithms registered first.

Takes exactly the arguments of ``python -m rl_zoo3.train`` (see ``--help``). The start-up hook installed with
the package makes ``python -m rl_zoo3.train --algo ds_td3`` work directly; this wrapper is the explicit route
rl-zoo3 documents for external algorithms, and works even when ``.pth`` files are not processed (``python -S``).
"""

from __future__ import annotations


def main() -> None:
    """Register sb3-dst with rl-zoo3, then run rl-zoo3's training entry point."""
    from sb3_dst.zoo import register

    register()
    from rl_zoo3.train import train

    train()


if __name__ == "__main__":
    main()
