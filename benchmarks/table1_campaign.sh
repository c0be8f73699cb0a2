#!/usr/bin/env bash
# The paper's Table 1 protocol at 1M steps (issue #27): TD3, DS-TD3 and Static-TD3 with the paper's settings
# (256-256, batch 100, λ = (7, 64), η = 0.05, e = 1000, 25k random steps), evaluation every 5k steps over 10
# episodes, denormals flushed. Resumable: finished runs are skipped and an interrupted run resumes bit for bit
# from its last checkpoint. Checkpoints live outside the work tree (CHECKPOINT_DIR, by default
# ~/.cache/sb3-dst/checkpoints), so a fresh clone resumes every run; commit each finished run as it comes.
#   nohup bash benchmarks/table1_campaign.sh > table1.log 2>&1 &     (from the repository root, in the venv)
# Stop it with SIGTERM to the scheduler (kill -TERM <pid>): a background job ignores SIGINT.
# Cost here: 1 to 2.5 core-hours per run; the 12 runs of step 1 take about 10 hours of both cores.
# Arguments are passed on to every command. On a Ray cluster (docs/ray.md), with CHECKPOINT_DIR on a file system that
# every node mounts:
#   CHECKPOINT_DIR=/shared/sb3-dst/checkpoints bash benchmarks/table1_campaign.sh --backend ray --address auto
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-}  # runs at a time; default 2 locally, and with --backend ray as many as the cluster's CPUs allow
CHECKPOINT_DIR=${CHECKPOINT_DIR:-$HOME/.cache/sb3-dst/checkpoints}
COMMON=(--seeds 0 1 2 --steps 1000000 --eval-freq 5000 --eval-episodes 10 --learning-starts 25000 --flush-denormal
    ${JOBS:+--jobs "$JOBS"} --checkpoint-freq 25000 --checkpoint-dir "$CHECKPOINT_DIR" --out benchmarks/results/table1_1m
    "$@")
TITLE="The paper's Table 1 at 1M steps: TD3, Static-TD3 and DS-TD3"
# 1. TD3 and DS-TD3 on HalfCheetah and Walker2d, 3 seeds each (12 runs)
python -m sb3_dst.benchmark run --algos TD3 DS-TD3 --envs HalfCheetah-v5 Walker2d-v5 "${COMMON[@]}" --title "$TITLE"
# 2. Static-TD3 on HalfCheetah
python -m sb3_dst.benchmark run --algos Static-TD3 --envs HalfCheetah-v5 "${COMMON[@]}" --title "$TITLE"
# 3. if compute remains: all three on Hopper
python -m sb3_dst.benchmark run --algos TD3 Static-TD3 DS-TD3 --envs Hopper-v5 "${COMMON[@]}" --title "$TITLE"
