#!/usr/bin/env bash
# First results of the sb3-contrib algorithms (issue #13), resumable: finished runs are skipped and an interrupted
# run resumes from its last checkpoint, so re-running this script after an interruption continues where it stopped.
# Checkpoints are git-ignored: they last as long as the work tree does (a fresh clone restarts unfinished runs).
#   bash benchmarks/contrib_campaign.sh            (from the repository root, in the project's venv)
# Costly on CPU: a 100k-step CrossQ run (1024-1024 critics, batch 256, compute-bound at 89 ms per step here on a
# fast day) takes about 2.5 hours of one core, a TQC run about 30 minutes (17 ms per step): about 18 hours of one
# core in all. TQC goes first, so that its results (about 3 core-hours) come before the CrossQ ones.
# CrossQ runs with the library's 1024-1024 critics, not rl-zoo3's tuned 2048-2048 (the harness default on MuJoCo):
# those cost about 3x more per step here (benchmarks/crossq_critic_width.py), 40+ core-hours for the six runs.
# See benchmarks/hyperparams/crossq_1024/.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
COMMON=(--envs HalfCheetah-v5 --seeds 0 1 2 --steps 100000 --eval-freq 5000 --eval-episodes 10 --learning-starts 10000
    --flush-denormal --jobs "$JOBS" --out benchmarks/results/contrib_100k)
TITLE='sb3-contrib: TQC and CrossQ vs their dynamic-sparse versions, 100k steps'
python -m sb3_dst.benchmark run --algos TQC DS-TQC "${COMMON[@]}" --title "$TITLE"
python -m sb3_dst.benchmark run --algos CrossQ DS-CrossQ "${COMMON[@]}" --title "$TITLE" \
    --hyperparams benchmarks/hyperparams/crossq_1024
