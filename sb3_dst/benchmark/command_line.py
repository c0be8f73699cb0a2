"""The benchmark harness's command-line grammar: the parser of ``python -m sb3_dst.benchmark`` and what a command
line asks for. It depends on nothing else of the harness, so the report can read recorded command lines
(:func:`requested_runs`) without importing the command's entry point (:mod:`sb3_dst.benchmark.__main__`)."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from collections.abc import Sequence
from pathlib import Path

from sb3_dst.families import FAMILIES

__all__ = ["ABLATIONS", "ablation_variants", "build_parser", "requested_runs"]

ABLATIONS: dict[str, tuple[str, list[str]]] = {
    # the paper's Figure 3: evolution interval e
    "interval": ("evolution_interval", ["200", "500", "1000", "2000"]),
    # the paper's Figure 4: 25 %, 50 % and 80 % of the connections removed
    "sparsity": ("sparsity", ["0.25", "0.5", "0.8"]),
}

EXAMPLES = """examples:
  python -m sb3_dst.benchmark run --algos TD3 Static-TD3 DS-TD3 --envs HalfCheetah-v5 Hopper-v5 \\
      --seeds 0 1 2 --steps 100000 --learning-starts 10000 --out benchmarks/results/td3_100k
  python -m sb3_dst.benchmark run --algos TD3 DS-TD3 --envs HalfCheetah-v5 --seeds 0 1 2 --steps 1000000 \\
      --backend ray --address auto --checkpoint-dir /shared/checkpoints --out benchmarks/results/td3_1m
  python -m sb3_dst.benchmark ablation interval --envs HalfCheetah-v5 --seeds 0 1 2 --steps 100000 \\
      --learning-starts 10000 --out benchmarks/results/ablation_interval
  python -m sb3_dst.benchmark report --out benchmarks/results/td3_100k
"""


def _other_families() -> str:
    """The family table's names after TD3, for the help text: "SAC, DDPG, TQC and CrossQ"."""
    names = [family.name for family in FAMILIES if family.name != "TD3"]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def _add_run_options(parser: argparse.ArgumentParser, algos: bool) -> None:
    if algos:
        parser.add_argument(
            "--algos", nargs="+", required=True,
            help=f"TD3 Static-TD3 DS-TD3 Pruned-TD3, the same for {_other_families()} (e.g. DS-TQC), "
            "with overrides: 'DS-TD3:evolution_interval=200'",
        )  # fmt: skip
    parser.add_argument("--envs", nargs="+", required=True, help="gymnasium ids, e.g. HalfCheetah-v5 Hopper-v5")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, required=True, help="environment steps per run (Δ)")
    parser.add_argument("--eval-freq", type=int, default=5000, help="steps between evaluations (default 5000)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="deterministic episodes per evaluation")
    parser.add_argument("--learning-starts", type=int, default=None, help="override the random warm-up steps")
    parser.add_argument("--net-arch", nargs="+", type=int, default=None, help="override the 256 256 networks")
    parser.add_argument("--hyperparams", default=None, help="directory of rl-zoo3 files (td3.yml, ds_td3.yml, ...)")
    parser.add_argument(
        "--flush-denormal", action="store_true",
        help="treat denormal floats as zero in every run (torch.set_flush_denormal): on x86 CPUs dense TD3 slows "
        "down about threefold without it; part of each run's config",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=None,
        help="runs at a time, one torch thread each (default 2; with --backend ray, as many as the cluster's CPUs "
        "allow)",
    )  # fmt: skip
    parser.add_argument(
        "--backend", choices=["local", "ray"], default="local",
        help="where the runs run: 'local' processes (default) or the tasks of a Ray cluster (docs/ray.md; "
        'pip install "sb3-dst[ray]"); the results are the same files in --out',
    )  # fmt: skip
    parser.add_argument(
        "--address", default=None,
        help="with --backend ray: 'auto' (the cluster started on this machine with `ray start`, or RAY_ADDRESS) "
        "or HOST:PORT of the head node; absent, a Ray instance is started here and shut down at the end",
    )  # fmt: skip
    parser.add_argument(
        "--cpus-per-run", type=float, default=None,
        help="with --backend ray: CPUs each run reserves (default 1; a run computes with one torch thread)",
    )  # fmt: skip
    parser.add_argument(
        "--max-retries", type=int, default=None,
        help="with --backend ray: times a run whose worker or node died starts again, from its newest checkpoint "
        "(default 3); a run that fails with an error of its own is not retried",
    )  # fmt: skip
    parser.add_argument(
        "--checkpoint-freq",
        type=int,
        default=10_000,
        help="steps between a run's checkpoints, from which an interrupted run resumes exactly (default 10000; "
        "0: none, an interrupted run restarts)",
    )
    parser.add_argument(
        "--checkpoint-dir", type=Path, default=None,
        help="keep checkpoints in CHECKPOINT_DIR/<run id>-<config digest>/ instead of the run directories, e.g. "
        "~/.cache/sb3-dst/checkpoints: outside the work tree, a fresh clone or a cleaned tree resumes every run "
        "(each checkpoint keeps the run's evaluation rows)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output directory (resumable)")
    parser.add_argument("--title", default=None, help="report title")
    _add_label_option(parser)
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="only show what would run: finished runs, runs resuming from a checkpoint, runs starting, time left",
    )


def _add_label_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--label", nargs=2, action="append", default=[], metavar=("VARIANT", "NAME"),
        help="show VARIANT as NAME in the report's tables and plots, e.g. --label 'Pruned-TD3:sparsity=0.9' "
        "'Pruning 90 %%'; 'sparsity=*' names a method across sparsity levels (dense-share plot). Kept in "
        "OUT/labels.json for later reports; run directories do not change. Repeatable",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_dst.benchmark",
        description=f"Benchmark the dynamic-sparse algorithms ({', '.join(f.harness_name('ds') for f in FAMILIES)}) "
        "against their dense, static and pruned baselines (Sokar et al. Tables 1-3, and beyond).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_options(sub.add_parser("run", help="run algorithms x envs x seeds"), algos=True)
    ablation = sub.add_parser("ablation", help="DS-TD3 evolution interval or sparsity sweep, with dense TD3")
    ablation.add_argument("kind", choices=sorted(ABLATIONS))
    ablation.add_argument("--values", nargs="+", default=None, help="override the swept values")
    ablation.add_argument("--algo", default="DS-TD3", help="swept algorithm (default DS-TD3)")
    ablation.add_argument("--baseline", default="TD3", help="dense baseline run next to it (default TD3; '' for none)")
    _add_run_options(ablation, algos=False)
    report = sub.add_parser(
        "report",
        help="write report.md (tables, IQM/CI aggregates, learning speed) and its PNGs for an output directory",
    )
    report.add_argument("--out", type=Path, required=True)
    report.add_argument("--title", default=None)
    _add_label_option(report)
    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("run_dir", type=Path)
    worker.add_argument("--parent-pid", type=int, default=None)
    worker.add_argument("--checkpoint-freq", type=int, default=0)
    worker.add_argument("--checkpoint-dir", type=Path, default=None)
    return parser


def ablation_variants(args: argparse.Namespace) -> list[str]:
    """The variants an ``ablation`` command runs: the swept values, and its dense baseline first unless ''."""
    key, default_values = ABLATIONS[args.kind]
    algos = [f"{args.algo}:{key}={value}" for value in (args.values or default_values)]
    if args.baseline:
        algos.insert(0, args.baseline)
    return algos


def requested_runs(argv: Sequence[str]) -> list[tuple[str, str, int]]:
    """The (env, variant, seed) of every run that a ``run`` or ``ablation`` command line (without the leading
    ``python -m sb3_dst.benchmark``) asks for; [] for other commands. Raises ``ValueError`` if it does not parse."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(list(argv))
    except SystemExit as error:
        raise ValueError(f"not a benchmark command line: {shlex.join(argv)} ({stderr.getvalue().strip()})") from error
    if args.command == "run":
        algos = list(args.algos)
    elif args.command == "ablation":
        algos = ablation_variants(args)
    else:
        return []
    return [(env, algo, seed) for env in args.envs for algo in algos for seed in args.seeds]
