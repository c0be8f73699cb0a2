"""Command line of the benchmark harness: ``python -m sb3_dst.benchmark {run,ablation,report}``."""

from __future__ import annotations

import argparse
import contextlib
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


def _check_backend(args: argparse.Namespace) -> None:
    """Refuse, before anything starts, Ray options without ``--backend ray``, and a Ray backend that cannot run:
    Ray not installed, no ``--checkpoint-dir``, an address that does not answer."""
    if args.backend == "local":
        ray_only = {"--address": args.address, "--cpus-per-run": args.cpus_per_run, "--max-retries": args.max_retries}
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise ValueError(f"{' '.join(given)} only apply to --backend ray")
        return
    from sb3_dst.benchmark.ray_backend import check_address, import_ray

    if args.checkpoint_dir is None:
        raise ValueError(
            "--backend ray needs --checkpoint-dir: a directory that every node of the cluster reaches at the same "
            "path (a shared file system; on one machine, any directory), where runs work and keep their checkpoints"
        )
    for flag, value, least in (("--jobs", args.jobs, 1), ("--max-retries", args.max_retries, 0)):
        if value is not None and value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    if args.cpus_per_run is not None and args.cpus_per_run <= 0:
        raise ValueError(f"--cpus-per-run must be > 0, got {args.cpus_per_run}")
    import_ray()
    check_address(args.address)


def _run(args: argparse.Namespace, algos: list[str], argv: Sequence[str]) -> int:
    from sb3_dst.benchmark.report import save_labels, write_report
    from sb3_dst.benchmark.runner import check_runs, plan_runs, run_campaign, unfinished_runs

    configs = plan_runs(
        algos, args.envs, args.seeds, args.steps, args.eval_freq, args.eval_episodes,
        args.hyperparams, args.learning_starts, args.net_arch, args.flush_denormal,
    )  # fmt: skip
    labels = [(variant, name) for variant, name in args.label]
    save_labels(args.out, labels, variants=algos, write=False)  # bad names fail before anything runs or is written
    _check_backend(args)
    check_runs(configs)  # a dry run, too, says when the command would fail on bad input
    if args.dry_run:
        from sb3_dst.benchmark.runner import describe_plan

        print(describe_plan(configs, args.out, args.checkpoint_dir))
        return 0
    if args.checkpoint_freq < 0:
        raise ValueError(f"--checkpoint-freq must be >= 0, got {args.checkpoint_freq}")
    save_labels(args.out, labels, variants=algos)
    pending = unfinished_runs(configs, args.out)
    try:
        if args.backend == "ray":
            from sb3_dst.benchmark.ray_backend import ray_session, run_campaign_ray

            # Connected before the command is recorded: an unreachable cluster is refused with nothing written.
            with ray_session(args.address) if pending else contextlib.nullcontext():
                if pending:
                    _record_command(args.out, argv)
                failed = run_campaign_ray(
                    configs, args.out, args.checkpoint_dir, address=args.address, cpus_per_run=args.cpus_per_run or 1,
                    max_retries=3 if args.max_retries is None else args.max_retries, jobs=args.jobs,
                    checkpoint_freq=args.checkpoint_freq,
                )  # fmt: skip
        else:
            if pending:  # a call that runs nothing, or is refused, adds nothing to the history
                _record_command(args.out, argv)
            failed = run_campaign(
                configs, args.out, jobs=args.jobs or 2, checkpoint_freq=args.checkpoint_freq,
                checkpoint_dir=args.checkpoint_dir,
            )  # fmt: skip
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
