#!/usr/bin/env bash
# First results of the sb3-contrib algorithms (issue #13), resumable: finished runs are skipped and an interrupted
# run resumes from its last checkpoint, so re-running this script after an interruption continues where it stopped.
# Checkpoints are git-ignored: they last as long as the work tree does (a fresh clone restarts unfinished runs).
#   bash benchmarks/contrib_campaign.sh            (from the repository root, in the project's venv)
# Costly on CPU: a 100k-step TQC run takes about 30 minutes of one core (17 ms per step), a CrossQ run with 256-256
# critics about an hour (30 ms per step). TQC goes first.
# CrossQ runs with 256-256 critics, not CrossQ's default 1024-1024 nor rl-zoo3's tuned 2048-2048: a 1024-wide run
# costs 2.5 to 6.5 hours here (89 ms per step alone on a fast day, 230 ms side by side on a slow one), 2048-wide
# about 3x that (benchmarks/crossq_critic_width.py), and a session on this project's machines ends after 3 hours with its
# checkpoints. See benchmarks/hyperparams/crossq_256/. On a machine where runs can last, the 1024-wide campaign is
# the same command with --hyperparams benchmarks/hyperparams/crossq_1024 and another --out.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
COMMON=(--envs HalfCheetah-v5 --seeds 0 1 2 --steps 100000 --eval-freq 5000 --eval-episodes 10 --learning-starts 10000
    --flush-denormal --jobs "$JOBS" --out benchmarks/results/contrib_100k)
TITLE='sb3-contrib: TQC and CrossQ vs their dynamic-sparse versions, 100k steps'
python -m sb3_dst.benchmark run --algos TQC DS-TQC "${COMMON[@]}" --title "$TITLE"
python -m sb3_dst.benchmark run --algos CrossQ DS-CrossQ "${COMMON[@]}" --title "$TITLE" \
    --hyperparams benchmarks/hyperparams/crossq_256
