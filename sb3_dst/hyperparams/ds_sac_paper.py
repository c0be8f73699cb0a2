"""DS-SAC with the paper's hard target update (Appendix A: tau = 1 every 1000 gradient steps, counted globally), for
rl-zoo3: ``python -m rl_zoo3.train --algo ds_sac -conf sb3_dst.hyperparams.ds_sac_paper``. Every other setting is
``ds_sac.yml``'s, whose default is SB3's soft update (tau = 0.005 every step): see
``benchmarks/results/sac_targets_100k/README.md``."""

from sb3_dst.hyperparams import with_paper_target_update

hyperparams = with_paper_target_update("ds_sac")
