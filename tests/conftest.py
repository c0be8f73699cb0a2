"""Shared fixtures: one torch thread, small networks that fit Pendulum-v1 (obs 3, act 1)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch as th

th.set_num_threads(1)

#: Two hidden layers of 32: λ must keep λ(n_in + n_out) <= n_in·n_out, e.g. 3x32 allows λ <= 2.7.
SMALL = dict(policy_kwargs=dict(net_arch=[32, 32]), er_lambda=[1.0, 8.0], learning_starts=50, batch_size=32)


def assert_same_outputs(a, b, model) -> None:
    """Outputs of a model's network and of a copy loaded on its own (plain layers, the masked path): bit for bit
    on the masked path; within float rounding when the model's layers compute with the sparse kernels."""
    from sb3_dst.common.sparse_backend import uses_sparse_kernels

    exact = not any(uses_sparse_kernels(layer, 16) for layer in model.policy.modules())
    a, b = (tuple(x) if isinstance(x, tuple | list) else (x,) for x in (a, b))
    for x, y in zip(a, b, strict=True):
        if exact:
            assert th.equal(x, y)
        else:
            th.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@pytest.fixture
def small_kwargs() -> dict:
    return {**SMALL, "policy_kwargs": dict(SMALL["policy_kwargs"])}


# The backend of every DST model built without `sparse_backend=` (read only by the test suite): CI runs the algorithm
# and parity tests a second time with SB3_DST_TEST_BACKEND=sparse, so that every layer computes with the sparse
# kernels (the default "auto" leaves these tests' small layers on the masked path).
if os.environ.get("SB3_DST_TEST_BACKEND"):
    from sb3_dst.common.dst import DSTMixin
    from sb3_dst.common.sparse_backend import check_backend

    DSTMixin.default_sparse_backend = check_backend(os.environ["SB3_DST_TEST_BACKEND"])
