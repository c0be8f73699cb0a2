"""Shared fixtures: one torch thread, small networks that fit Pendulum-v1 (obs 3, act 1)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch as th

th.set_num_threads(1)

#: Two hidden layers of 32: λ must keep λ(n_in + n_out) <= n_in·n_out, e.g. 3x32 allows λ <= 2.7.
SMALL = dict(policy_kwargs=dict(net_arch=[32, 32]), er_lambda=[1.0, 8.0], learning_starts=50, batch_size=32)


@pytest.fixture
def small_kwargs() -> dict:
    return {**SMALL, "policy_kwargs": dict(SMALL["policy_kwargs"])}
