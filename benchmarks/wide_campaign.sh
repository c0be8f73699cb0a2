#!/usr/bin/env bash
# The payoff of the sparse backend (issue #26): sparse-wide agents at the connection count of narrower dense ones,
# under the protocol of benchmarks/results/contrib_100k (HalfCheetah-v5, 100k steps, 3 seeds, 10k random steps,
# evaluation every 5k steps over 10 episodes, denormals flushed). Resumable: finished runs are skipped and an
# interrupted run resumes bit for bit from its last checkpoint, kept outside the work tree (CHECKPOINT_DIR, by
# default ~/.cache/sb3-dst/checkpoints). Commit each finished run as it comes.
#   nohup bash benchmarks/wide_campaign.sh > wide.log 2>&1 &      (from the repository root, in the venv)
# 1. DS-CrossQ with 1024-wide critics at the sparsity that gives them the connections of dense 256-wide ones
#    (about 93 %; the actor stays DS-CrossQ-256's, half dense), beside the committed CrossQ-256 and DS-CrossQ-256
#    runs, copied from contrib_100k into wide_crossq_100k so that one report holds the three.
# 2. DS-SAC (SB3's soft target update) with 1024-1024 networks at the sparsity of dense 256-256 ones, beside
#    sac_targets_100k's dense SAC and its 256-256 DS-SAC with the same soft update, copied into wide_sac_100k
#    likewise.
# The sparse backend's default ("auto") runs the wide layers on the kernels; each run's wall time is in its
# done.json and in the report's steps/s.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-$HOME/.cache/sb3-dst/checkpoints}
COMMON=(--envs HalfCheetah-v5 --seeds 0 1 2 --steps 100000 --eval-freq 5000 --eval-episodes 10 --learning-starts 10000
    --flush-denormal --jobs "$JOBS" --checkpoint-dir "$CHECKPOINT_DIR" "$@")

copy_baselines() {  # copy_baselines FROM TO RUN...: finished runs of another campaign, with their runs.csv rows
    local from=$1 to=$2
    shift 2
    mkdir -p "$to/runs"
    for run in "$@"; do
        if [ ! -f "$to/runs/$run/done.json" ]; then
            cp -r "$from/runs/$run" "$to/runs/"
            if [ ! -f "$to/runs.csv" ]; then head -1 "$from/runs.csv" > "$to/runs.csv"; fi
            grep "^$run," "$from/runs.csv" >> "$to/runs.csv"
        fi
    done
}

OUT=benchmarks/results/wide_crossq_100k
copy_baselines benchmarks/results/contrib_100k "$OUT" HalfCheetah-v5__{CrossQ,DS-CrossQ}__seed{0,1,2}
# The copied runs' names (a run command names only its own variants; labels.json keeps both)
python -m sb3_dst.benchmark report --out "$OUT" --label CrossQ 'CrossQ 256 (dense)' \
    --label DS-CrossQ 'DS-CrossQ 256 (50 % sparse)' > /dev/null
python -m sb3_dst.benchmark run --algos "DS-CrossQ:critic_sparsity='match:256-256',actor_sparsity=0.5" \
    --hyperparams benchmarks/hyperparams/crossq_1024 "${COMMON[@]}" --out "$OUT" \
    --label "DS-CrossQ:critic_sparsity='match:256-256',actor_sparsity=0.5" 'DS-CrossQ 1024 (93 % sparse critics)' \
    --title 'Sparse-wide CrossQ: 1024-wide critics at the connection count of dense 256-wide ones, 100k steps'

OUT=benchmarks/results/wide_sac_100k
copy_baselines benchmarks/results/sac_targets_100k "$OUT" HalfCheetah-v5__SAC__seed{0,1,2} \
    HalfCheetah-v5__DS-SAC__tau-0.005__target_update_interval-1__seed{0,1,2}
WIDE_SAC="DS-SAC:tau=0.005,target_update_interval=1,actor_sparsity='match:256-256',critic_sparsity='match:256-256'"
python -m sb3_dst.benchmark report --out "$OUT" --label SAC 'SAC 256 (dense)' \
    --label 'DS-SAC:tau=0.005,target_update_interval=1' 'DS-SAC 256 (half dense)' > /dev/null
python -m sb3_dst.benchmark run --algos "$WIDE_SAC" --net-arch 1024 1024 "${COMMON[@]}" --out "$OUT" \
    --label "$WIDE_SAC" 'DS-SAC 1024 (sparse at dense 256 connections)' \
    --title 'Sparse-wide SAC: 1024-1024 networks at the connection count of dense 256-256 ones, 100k steps'
