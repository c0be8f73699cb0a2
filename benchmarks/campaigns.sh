#!/usr/bin/env bash
# Every pending benchmark campaign, in order: issue #11's (beyond_campaign.sh), then issue #13's
# (contrib_campaign.sh). Resumable: re-run it after an interruption, finished runs are skipped and interrupted ones
# resume from their last checkpoint.
#   nohup bash benchmarks/campaigns.sh > campaigns.log 2>&1 &      (from the repository root, in the project's venv)
set -euo pipefail
cd "$(dirname "$0")/.."
bash benchmarks/beyond_campaign.sh
bash benchmarks/contrib_campaign.sh
