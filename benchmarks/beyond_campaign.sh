#!/usr/bin/env bash
# The "beyond the paper" campaign (issue #11), resumable: each command skips the runs already finished in its
# output directory, so re-running this script after an interruption continues where it stopped.
#   bash benchmarks/beyond_campaign.sh            (from the repository root, in the project's venv)
# All three steps are done (30 + 12 + 24 runs): running it again only rewrites the reports. From scratch it takes
# roughly 8-25 hours of both cores (a 200k-step TD3 run takes 15-50 minutes of one core, depending on the machine).
# Runs write a checkpoint every 10000 steps and resume from it exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
COMMON=(--eval-freq 5000 --eval-episodes 10 --learning-starts 10000 --flush-denormal --jobs "$JOBS")
RIGL="growth='gradient',drop_fraction=0.1,drop_fraction_schedule='cosine'"
TD3_OUT=benchmarks/results/beyond_200k
TITLE='Beyond the paper: sparse TD3 at 90-98% sparsity, 200k steps'
# Short names in the reports' tables and plots (display only: kept in OUT/labels.json, run directories unchanged).
# 'sparsity=*' names a method across its sparsity levels in the dense-share plot.
FAMILY_LABELS=(--label "DS-TD3:sparsity=*,$RIGL" 'RigL (ERK, cosine η)' --label 'Pruned-TD3:sparsity=*' 'Gradual magnitude pruning')
STEP1_LABELS=(--label DS-TD3 'DS-TD3 (paper, λ)' --label 'DS-TD3:sparsity=0.9' 'SET 90 %'
    --label "DS-TD3:sparsity=0.9,$RIGL" 'RigL 90 %' --label 'Pruned-TD3:sparsity=0.9' 'Pruning 90 %' "${FAMILY_LABELS[@]}")
STEP2_LABELS=(--label SAC 'SAC, soft update' --label DS-SAC 'DS-SAC, hard update (paper)'
    --label 'DS-SAC:tau=0.005,target_update_interval=1' 'DS-SAC, soft update'
    --label 'Static-SAC:sparsity=0.0,er_lambda=None' 'SAC, hard update (control)')
STEP3_LABELS=(--label "DS-TD3:sparsity=0.95,$RIGL" 'RigL 95 %' --label "DS-TD3:sparsity=0.98,$RIGL" 'RigL 98 %'
    --label 'Pruned-TD3:sparsity=0.95' 'Pruning 95 %' --label 'Pruned-TD3:sparsity=0.98' 'Pruning 98 %'
    "${FAMILY_LABELS[@]}")

# 1. Dense TD3, the paper's DS-TD3, and the three methods at 90% sparsity (ERK): SET, RigL with cosine η, pruning.
python -m sb3_dst.benchmark run --algos TD3 DS-TD3 'DS-TD3:sparsity=0.9' "DS-TD3:sparsity=0.9,$RIGL" \
    'Pruned-TD3:sparsity=0.9' --envs HalfCheetah-v5 Walker2d-v5 --seeds 0 1 2 --steps 200000 "${COMMON[@]}" \
    --out "$TD3_OUT" --title "$TITLE" "${STEP1_LABELS[@]}"
# 2. DS-SAC under the paper's hard target update (its default hyperparameters) and SB3's soft one, vs dense SAC.
#    The fourth method is the control added once the first three were in: dense SAC under the hard update
#    (Static-SAC at zero sparsity, bit for bit dense SAC with the paper's schedule), to tell whether DS-SAC's slow
#    start under the hard update comes from the update or from sparsity.
python -m sb3_dst.benchmark run --algos SAC DS-SAC 'DS-SAC:tau=0.005,target_update_interval=1' \
    'Static-SAC:sparsity=0.0,er_lambda=None' \
    --envs HalfCheetah-v5 --seeds 0 1 2 --steps 100000 "${COMMON[@]}" --out benchmarks/results/sac_targets_100k \
    --title 'DS-SAC: hard vs soft target update, 100k steps' "${STEP2_LABELS[@]}"
# 3. 95% and 98% sparsity. The issue asks for the method that does best at 90% (RigL with ERK and cosine η unless
#    step 1 says otherwise). Step 1 (3 seeds) split: gradual pruning matched dense TD3 on HalfCheetah (100% of its
#    final return and LCA, at 0.42x its training FLOPs) but was the weakest on Walker2d; RigL was the best
#    sparse-from-scratch method on Walker2d (79% of dense TD3's final return, 92% of its LCA, at 0.11x the FLOPs)
#    and level with SET on HalfCheetah. So both go to 95% and 98%: RigL (the issue's default) and pruning.
python -m sb3_dst.benchmark run --algos "DS-TD3:sparsity=0.95,$RIGL" "DS-TD3:sparsity=0.98,$RIGL" \
    'Pruned-TD3:sparsity=0.95' 'Pruned-TD3:sparsity=0.98' \
    --envs HalfCheetah-v5 Walker2d-v5 --seeds 0 1 2 --steps 200000 "${COMMON[@]}" --out "$TD3_OUT" --title "$TITLE" \
    "${STEP3_LABELS[@]}"
