"""Compiled kernel for the common case of Algorithm 3 (Maintain sparsity) on CPU.

:class:`sb3_dst.common.topology.TargetSparsity` calls the kernel of :func:`maintain_kernel` after every target
update. It does in one compiled call what the NumPy path does in a dozen array operations: rank the contested
entries, certify the ranking with one pass over the whole layer, and prune. The per-call cost of NumPy was most
of the overhead of DS-TD3 over TD3 (six target layers every other gradient step), hence this module.

Numba is imported lazily: importing :mod:`sb3_dst` stays fast, and without Numba the NumPy path is used.
The first call compiles the kernel (about a second), cached on disk for later processes.
"""

from __future__ import annotations

from typing import Any

#: Return codes of the kernel.
NOTHING_TO_PRUNE, PRUNED, NEEDS_MERGE, OUTSIDE_NONZEROS = 0, 1, 2, 3

_kernel: Any = None


def _compile() -> Any:
    import numba  # lazy: about 0.3 s to import, and optional
    import numpy as np

    @numba.njit(cache=True)
    def select(values, kth):  # type: ignore[no-untyped-def]
        """The kth smallest of ``values`` (left unchanged): quickselect with branch-free three-way partitions.

        Each round copies the elements below and above a median-of-three pivot into two buffers with
        unconditional writes, so the comparisons never steer a branch; the random order of magnitudes would
        mispredict about half of them in a classic in-place partition.
        """
        source = values
        below = np.empty_like(values)
        above = np.empty_like(values)
        size = values.size
        while size > 16:
            a, b, c = source[0], source[size // 2], source[size - 1]
            pivot = max(min(a, b), min(max(a, b), c))
            n_below = 0
            n_above = 0
            for i in range(size):
                x = source[i]
                below[n_below] = x
                n_below += x < pivot
                above[n_above] = x
                n_above += x > pivot
            if kth < n_below:
                spare = source if source is not values else np.empty_like(values)
                source, below, size = below, spare, n_below
            elif kth < size - n_above:
                return pivot
            else:
                kth -= size - n_above
                spare = source if source is not values else np.empty_like(values)
                source, above, size = above, spare, n_above
        return np.sort(source[:size])[kth]

    @numba.njit(cache=True)
    def kernel(weight, contested, magnitude, candidates, n_outside, k, hint):  # type: ignore[no-untyped-def]
        # The loops over contested entries are branch-free (conditional increments and selects): whether an
        # entry is present or small follows no pattern, so branches on it would be mispredicted half the time.
        n = contested.size
        n_present = 0
        n_candidates = 0  # present magnitudes up to the hint (usually a little over the excess)
        for i in range(n):
            m = abs(weight[contested[i]])
            magnitude[i] = m
            n_present += m > 0
            candidates[n_candidates] = m
            n_candidates += (m > 0) & (m <= hint)
        excess = n_outside + n_present - k
        if excess > n_present:
            return OUTSIDE_NONZEROS, 0.0
        if excess <= 0:
            return NOTHING_TO_PRUNE, 0.0
        if n_candidates < excess:  # the hint was too low: rank every present magnitude
            n_candidates = 0
            for i in range(n):
                candidates[n_candidates] = magnitude[i]
                n_candidates += magnitude[i] > 0
        bound = select(candidates[:n_candidates], excess - 1)  # the excess-th smallest present magnitude
        # Certificate: no non-zero outside the contested positions is below the bound. Zeros are below it too,
        # and the count of those outside is known (n_outside is then checked as well).
        below_contested = 0  # present contested entries below the bound
        for i in range(n):
            below_contested += (magnitude[i] > 0) & (magnitude[i] < bound)
        below_layer = 0  # every entry below the bound, zeros included
        for i in range(weight.size):
            below_layer += abs(weight[i]) < bound
        zeros = weight.size - n_outside - n_present
        if below_layer != zeros + below_contested:
            return NEEDS_MERGE, bound
        # Prune every present entry below the bound, then as many entries equal to it as the excess still needs.
        ties = excess - below_contested
        for i in range(n):
            m = magnitude[i]
            tie = (m == bound) & (ties > 0)
            ties -= tie
            prune = ((m > 0) & (m < bound)) | tie
            j = contested[i]
            weight[j] = 0.0 if prune else weight[j]
            magnitude[i] = 0.0 if prune else m
        return PRUNED, bound

    return kernel


def maintain_kernel() -> Any:
    """The compiled kernel, or ``None`` when Numba is not installed.

    ``kernel(weight, contested, magnitude, candidates, n_outside, k, hint) -> (code, bound)``: ``weight`` is
    the flat target weight (pruned in place), ``contested`` the contested positions, ``magnitude`` and
    ``candidates`` scratch arrays of their size (``magnitude`` receives their magnitudes after pruning),
    ``n_outside`` the number of non-zeros elsewhere, ``k`` the connections to keep, and ``hint`` a guess of
    the bound (the previous one, doubled): only magnitudes up to it are ranked when there are enough of them.
    ``bound`` is the largest magnitude pruned (``PRUNED``) or the candidate bound that failed the certificate
    (``NEEDS_MERGE``).
    """
    global _kernel
    if _kernel is None:
        try:
            _kernel = _compile()
        except ImportError:
            _kernel = False
    return _kernel or None
