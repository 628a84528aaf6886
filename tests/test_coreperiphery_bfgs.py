"""agglo.analysis._bfgs: scipy's BFGS without its wrappers, checked against scipy itself."""

from __future__ import annotations

import numpy as np
from scipy import optimize
from test_coreperiphery import _gravity_like  # the test networks of the module's own tests

from agglo.analysis import _bfgs
from agglo.analysis._bfgs import minimize_bfgs
from agglo.analysis.coreperiphery import _squared_objective


def _fit_problems() -> list[tuple]:
    """Core-periphery fits on c = x**2 whose runs end every way (converged; precision loss
    after dcsrch and the Wolfe zoom both failed; zoom successes and cubic-step rejections)."""
    out = []
    for n, seed in [(4, 1), (5, 0), (6, 1), (6, 2), (8, 2)]:
        a = _gravity_like(n, seed)
        iu = np.triu_indices(n, 1)
        ac = a[iu] - a[iu].mean()
        args = (ac, float(np.sqrt(ac @ ac)), iu)
        rng = np.random.default_rng(seed)
        out += [(np.sqrt(rng.uniform(0.05, 1.0, n)), args) for _ in range(3)]
    return out


def _assert_same(x0, args, fun=_squared_objective, **options):
    ref = optimize.minimize(fun, x0, args=args, jac=True, method="BFGS", options=options)
    got = minimize_bfgs(fun, x0, args, **options)
    # bit for bit: the same arithmetic in the same order
    assert np.array_equal(got.x, ref.x)
    assert got.fun == ref.fun
    assert (got.nit, got.status) == (ref.nit, ref.status)
    return got


def test_equals_scipy_bfgs_bit_for_bit_on_core_periphery_fits(monkeypatch):
    seen = {"wolfe2 ok": 0, "wolfe2 failed": 0}
    search = _bfgs._scalar_search_wolfe2

    def counted(*args, **kwargs):
        out = search(*args, **kwargs)
        seen["wolfe2 ok" if out[0] is not None else "wolfe2 failed"] += 1
        return out

    monkeypatch.setattr(_bfgs, "_scalar_search_wolfe2", counted)
    statuses = {
        _assert_same(x0, args, gtol=1e-7, maxiter=2000).status for x0, args in _fit_problems()
    }
    assert statuses == {0, 2}
    assert seen["wolfe2 ok"] > 0 and seen["wolfe2 failed"] > 0  # the fallback search ran


def test_equals_scipy_bfgs_on_rosenbrock_and_iteration_limit():
    def rosen(x):
        return optimize.rosen(x), optimize.rosen_der(x)

    assert _assert_same(np.full(5, -1.2), (), rosen, gtol=1e-9).status == 0
    assert _assert_same(np.array([-1.2, 1.0]), (), rosen, maxiter=7).status == 1
    assert _assert_same(np.ones(3), (), rosen).nit == 0  # at the optimum: no iteration
