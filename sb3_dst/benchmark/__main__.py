"""Command line of the benchmark harness: ``python -m sb3_dst.benchmark {run,ablation,report}``."""

from __future__ import annotations

import argparse
import datetime
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# the parser lives in command_line.py; these names stay importable from here
from sb3_dst.benchmark.command_line import ABLATIONS, ablation_variants, build_parser, requested_runs

__all__ = ["ABLATIONS", "build_parser", "cli", "main", "requested_runs"]


def _record_command(out: Path, argv: Sequence[str]) -> None:
    """Append the exact command, date and git commit to ``out/commands.txt`` (called only when a run starts)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join(["python", "-m", "sb3_dst.benchmark", *argv])
    with open(out / "commands.txt", "a") as file:
        file.write(f"# {stamp}, commit {commit}\n{command}\n")


def _run(args: argparse.Namespace, algos: list[str], argv: Sequence[str]) -> int:
    from sb3_dst.benchmark.report import save_labels, write_report
    from sb3_dst.benchmark.runner import check_runs, plan_runs, run_campaign, unfinished_runs

    configs = plan_runs(
        algos, args.envs, args.seeds, args.steps, args.eval_freq, args.eval_episodes,
        args.hyperparams, args.learning_starts, args.net_arch, args.flush_denormal,
    )  # fmt: skip
    labels = [(variant, name) for variant, name in args.label]
    save_labels(args.out, labels, variants=algos, write=False)  # bad names fail before anything runs or is written
    check_runs(configs)  # a dry run, too, says when the command would fail on bad input
    if args.dry_run:
        from sb3_dst.benchmark.runner import describe_plan

        print(describe_plan(configs, args.out, args.checkpoint_dir))
        return 0
    save_labels(args.out, labels, variants=algos)
    if unfinished_runs(configs, args.out):  # a call that runs nothing, or is refused, adds nothing to the history
        _record_command(args.out, argv)
    try:
        if args.checkpoint_freq < 0:
            raise ValueError(f"--checkpoint-freq must be >= 0, got {args.checkpoint_freq}")
        failed = run_campaign(
            configs, args.out, jobs=args.jobs, checkpoint_freq=args.checkpoint_freq, checkpoint_dir=args.checkpoint_dir
        )
    except KeyboardInterrupt:
        return 130
    if not args.no_report:
        path = write_report(args.out, title=args.title)
        if path is not None:
            print(f"report: {path}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        from sb3_dst.benchmark.worker import run_worker

        return run_worker(args.run_dir, args.parent_pid, args.checkpoint_freq, args.checkpoint_dir)
    if args.command == "report":
        from sb3_dst.benchmark.report import run_variants, save_labels, write_report

        save_labels(args.out, [(variant, name) for variant, name in args.label], variants=run_variants(args.out))
        path = write_report(args.out, title=args.title)
        print(f"report: {path}" if path else f"no finished runs in {args.out}", file=sys.stderr)
        return 0 if path else 1
    if args.command == "ablation":
        if args.title is None:
            args.title = f"Ablation: {args.algo} {ABLATIONS[args.kind][0]}"
        return _run(args, ablation_variants(args), argv)
    return _run(args, list(args.algos), argv)


def cli() -> int:
    """Command-line entry: bad input ends with one line naming the problem, not a traceback."""
    try:
        return main()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
