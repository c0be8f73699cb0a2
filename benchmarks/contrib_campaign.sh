#!/usr/bin/env bash
# First results of the sb3-contrib algorithms (issue #13), resumable: finished runs are skipped and an interrupted
# run resumes from its last checkpoint, so re-running this script after an interruption continues where it stopped.
# Checkpoints are git-ignored: they last as long as the work tree does (a fresh clone restarts unfinished runs).
#   bash benchmarks/contrib_campaign.sh            (from the repository root, in the project's venv)
# Costly on CPU: a 100k-step TQC run takes about 30 minutes of one core (17 ms per step), a CrossQ run with 256-256
# critics about 55 minutes (34 to 37 ms per step side by side). TQC goes first.
# Why 256-wide CrossQ critics, not CrossQ's default 1024 nor rl-zoo3's 2048: benchmarks/hyperparams/crossq_256/ and
# benchmarks/results/contrib_100k/README.md. On a machine where runs can last hours, the 1024-wide campaign is the same
# command with --hyperparams benchmarks/hyperparams/crossq_1024 and another --out.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
COMMON=(--envs HalfCheetah-v5 --seeds 0 1 2 --steps 100000 --eval-freq 5000 --eval-episodes 10 --learning-starts 10000
    --flush-denormal --jobs "$JOBS" --out benchmarks/results/contrib_100k)
TITLE='sb3-contrib: TQC and CrossQ vs their dynamic-sparse versions, 100k steps'
python -m sb3_dst.benchmark run --algos TQC DS-TQC "${COMMON[@]}" --title "$TITLE"
python -m sb3_dst.benchmark run --algos CrossQ DS-CrossQ "${COMMON[@]}" --title "$TITLE" \
    --hyperparams benchmarks/hyperparams/crossq_256
