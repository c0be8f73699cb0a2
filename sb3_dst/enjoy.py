"""``python -m sb3_dst.enjoy``: rl-zoo3's ``enjoy`` with sb3-dst's algorithms registered first.

Takes exactly the arguments of ``python -m rl_zoo3.enjoy``, e.g.
``python -m sb3_dst.enjoy --algo ds_td3 --env Walker2d-v5 -f logs/``.
"""

from __future__ import annotations


def main() -> None:
    """Register sb3-dst with rl-zoo3, then run rl-zoo3's enjoy entry point."""
    from sb3_dst.zoo import register

    register()
    from rl_zoo3.enjoy import enjoy

    enjoy()


if __name__ == "__main__":
    main()
