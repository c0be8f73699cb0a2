"""Static-SAC with the paper's hard target update (tau = 1 every 1000 gradient steps), for rl-zoo3:
``python -m rl_zoo3.train --algo static_sac -conf sb3_dst.hyperparams.static_sac_paper``: the baseline of
``ds_sac_paper``, with every other setting of ``static_sac.yml``."""

from sb3_dst.hyperparams import with_paper_target_update

hyperparams = with_paper_target_update("static_sac")
