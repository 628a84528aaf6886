"""The batched Newton loop of agglo.analysis.coreperiphery against its plain form.

:func:`agglo.analysis.coreperiphery._newton_batch` keeps the state of its active runs
compacted and evaluates the full step with its gradient and Hessian at once (issue 14); the
loop below is the form it had before, gathering every run's state and making a separate
line search at every step. Both must return the same points bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_coreperiphery import _gravity_like  # the test networks of the module's own tests

from agglo.analysis import coreperiphery as cp


def _newton_batch_plain(x, ac, na, *, gtol=1e-10, maxiter=200, star_ratio=None, fast=False):
    """The loop of ``_newton_batch`` before issue 14, session 10 (the reference)."""
    x = x.copy()
    f, g, h = cp._squared_batch(x, ac, na, True, rank5=fast)
    act = np.flatnonzero(np.abs(g).max(axis=1) >= gtol)
    flat_end = np.zeros(x.shape[0], dtype=bool)
    share = np.full(x.shape[0], np.inf)
    for _ in range(maxiter):
        if not act.size:
            break
        xa, fa, ga, naa = x[act], f[act], g[act], na[act]
        aca = ac[act]
        d = cp._newton_directions(h[act], ga, fast=fast)
        slope = np.einsum("bi,bi->b", ga, d)
        t = np.ones(act.size)
        fn = np.empty(act.size)
        todo = np.arange(act.size)
        for _ in range(40):
            fn[todo] = cp._squared_batch(
                xa[todo] + t[todo, None] * d[todo], aca[todo], naa[todo], False, value_only=True
            )[0]
            todo = todo[fn[todo] > fa[todo] + 1e-4 * t[todo] * slope[todo]]
            if not todo.size:
                break
            t[todo] *= 0.5
        moved = fn < fa
        xn = np.where(moved[:, None], xa + t[:, None] * d, xa)
        fn2, gn, hn = cp._squared_batch(xn, aca, naa, True, rank5=fast)
        x[act], f[act], g[act], h[act] = xn, fn2, gn, hn
        cn = xn * xn
        flat = cn.max(axis=1) - cn.min(axis=1) < cp._MIN_SPREAD * cn.max(axis=1)
        flat_end[act] = flat
        done = ~moved | flat | (np.abs(gn).max(axis=1) < gtol)
        if star_ratio is not None:
            second = cp._second_share(cn)
            done |= (second < star_ratio) & (second < share[act])
            share[act] = second
        act = act[~done]
    return x, ~flat_end


def _null_batch(n: int, seed: int, n_perm: int = 10) -> tuple[np.ndarray, ...]:
    """Starts, pair-weight matrices and norms of the continuous nulls of one network."""
    a = _gravity_like(n, seed)
    prob = cp._null_problems(a, "continuous", np.random.default_rng(seed), n_perm, 2, 16, False)
    iu = np.triu_indices(n, 1)
    mats, starts = list(prob.mats), prob.starts
    acs = np.zeros((len(mats), n, n))
    nas = np.empty(len(mats))
    for k, b in enumerate(mats):
        ac = b[iu] - b[iu].mean()
        acs[k][iu] = ac
        acs[k] += acs[k].T
        nas[k] = np.sqrt(ac @ ac)
    owner = np.repeat(np.arange(len(mats)), [len(s) for s in starts])
    c0 = np.array([c for s in starts for c in s])
    return np.sqrt(c0), acs[owner], nas[owner]


@pytest.mark.parametrize("n", [5, 6, 16, 31])
@pytest.mark.parametrize("fast", [False, True])
def test_newton_batch_equals_plain_loop_bit_for_bit(n, fast):
    x0, ac, na = _null_batch(n, 7 * n)
    star = cp._STAR_RATIO if fast else None
    with cp._one_blas_thread():
        x, ok = cp._newton_batch(x0, ac, na, star_ratio=star, fast=fast)
        x_ref, ok_ref = _newton_batch_plain(x0, ac, na, star_ratio=star, fast=fast)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(ok, ok_ref)


def test_rank5_hessian_from_parts_equals_the_full_evaluation():
    """``_squared_batch(..., parts=True)`` then ``_rank5_hessian`` on any subset of the rows
    gives the value, gradient and Hessian of ``_squared_batch(..., True, rank5=True)``."""
    x0, ac, na = _null_batch(16, 3)
    f, g, h = cp._squared_batch(x0, ac, na, True, rank5=True)
    f2, g2, parts = cp._squared_batch(x0, ac, na, False, parts=True)
    np.testing.assert_array_equal(f2, f)
    np.testing.assert_array_equal(g2, g)
    np.testing.assert_array_equal(cp._rank5_hessian(x0, ac, parts), h)
    rows = np.arange(1, len(x0), 3)
    sub = tuple(v[rows] for v in parts)
    np.testing.assert_array_equal(cp._rank5_hessian(x0[rows], ac[rows], sub), h[rows])
