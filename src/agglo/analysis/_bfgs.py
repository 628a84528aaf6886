"""scipy's BFGS for one small problem, without its wrappers (the core-periphery refits).

:func:`minimize_bfgs` is ``scipy.optimize.minimize(fun, x0, args, jac=True, method="BFGS",
options={"gtol": gtol, "maxiter": maxiter})`` as scipy 1.17 computes it: the same iteration
(``_minimize_bfgs``: inverse-Hessian update, infinity-norm gradient test, ``xrtol = 0``), the
same line searches (MINPACK-2's ``dcsrch`` as ported to Python in ``scipy.optimize._dcsrch``,
and when it fails the strong-Wolfe ``scalar_search_wolfe2`` with its cubic/quadratic zoom),
the same numpy operations in the same order, so the same points bit for bit (tests against
scipy). What is left out is the generic machinery, which on the small problems of
:mod:`agglo.analysis.coreperiphery` (5-6 cities, a few hundred iterations per stage) costs
three times the objective: ``ScalarFunction`` and ``MemoizeJac`` (here one cached point),
argument checks, callbacks, counters and the ``LineSearchWarning`` (raised only inside
``warnings.catch_warnings``, which switches filters process-wide: none here). Issue 14:
0.72 -> 0.43 CPU-s for the stage's 34 refits.

The code follows scipy's (BSD-3-Clause, Copyright (c) 2001-2002 Enthought, Inc. 2003, SciPy
Developers; ``dcsrch``/``dcstep``: MINPACK-2, Argonne National Laboratory, J. J. Moré and
D. J. Thuente) line by line; comments name the scipy function each part mirrors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BFGSResult", "minimize_bfgs"]


@dataclass(frozen=True)
class BFGSResult:
    """Outcome of :func:`minimize_bfgs` (the fields of scipy's ``OptimizeResult`` it sets).

    ``x``: the last point; ``fun``: the objective there; ``nit``: iterations; ``status``: 0
    converged (gradient infinity norm <= ``gtol``), 1 ``maxiter`` reached, 2 the line
    searches failed (precision loss), 3 NaN.
    """

    x: np.ndarray
    fun: float
    nit: int
    status: int


class _LineSearchError(RuntimeError):
    pass


def _clip(v: Any, lo: float, hi: float) -> np.float64:
    # np.clip on a scalar (NaN stays NaN), without its dispatch overhead
    return np.float64(min(max(v, lo), hi))


def minimize_bfgs(
    fun: Callable[..., tuple[float, np.ndarray]],
    x0: np.ndarray,
    args: tuple = (),
    *,
    gtol: float = 1e-5,
    maxiter: int | None = None,
) -> BFGSResult:
    """Minimise ``fun`` by BFGS exactly as ``scipy.optimize.minimize(method="BFGS")`` does.

    Parameters
    ----------
    fun
        ``fun(x, *args) -> (f, grad)`` (scipy's ``jac=True``); ``x`` is a float64 vector it
        must not modify.
    x0
        Start (float64, flattened).
    args
        Extra arguments of ``fun``.
    gtol
        Stop when the largest gradient component is at most ``gtol``.
    maxiter
        Most iterations (default ``200 len(x0)``, as scipy).

    Returns
    -------
    BFGSResult
        The point, value, iterations and status scipy's ``OptimizeResult`` would hold.

    Examples
    --------
    >>> def f(x):
    ...     return float((x - 1.0) @ (x - 1.0)), 2.0 * (x - 1.0)
    >>> res = minimize_bfgs(f, np.zeros(3), gtol=1e-8)
    >>> np.round(res.x, 6).tolist(), res.status
    ([1.0, 1.0, 1.0], 0)
    """
    cache: list[Any] = [None, None, None]  # the last point and its (f, grad)

    def fg(x: np.ndarray) -> tuple[Any, np.ndarray]:
        # ScalarFunction + MemoizeJac: one evaluation per distinct point (compared by ==)
        last = cache[0]
        # logical_and.reduce: (x == last).all() without its dispatch; atleast_1d only when
        # needed (it returns an array of at least one dimension unchanged)
        if last is None or not np.logical_and.reduce(x == last):
            f, g = fun(x, *args)
            if not np.isscalar(f):
                f = np.asarray(f).item()
            if not (isinstance(g, np.ndarray) and g.ndim):
                g = np.atleast_1d(g)
            cache[0], cache[1], cache[2] = x.copy(), f, g
        return cache[1], cache[2]

    x0 = np.asarray(x0, dtype=float).flatten()
    if maxiter is None:
        maxiter = len(x0) * 200
    # _minimize_bfgs
    old_fval, gfk = fg(x0)
    k = 0
    n = len(x0)
    eye = np.eye(n, dtype=int)
    hk = eye
    old_old_fval = old_fval + np.linalg.norm(gfk) / 2
    xk = x0
    warnflag = 0
    gnorm = _amax_abs(gfk)
    while (gnorm > gtol) and (k < maxiter):
        pk = -np.dot(hk, gfk)
        try:
            alpha_k, old_fval, old_old_fval, gfkp1 = _line_search_wolfe12(
                fg, xk, pk, gfk, old_fval, old_old_fval
            )
        except _LineSearchError:
            warnflag = 2
            break
        sk = alpha_k * pk
        xkp1 = xk + sk
        xk = xkp1
        if gfkp1 is None:
            gfkp1 = fg(xkp1)[1]
        yk = gfkp1 - gfk
        gfk = gfkp1
        k += 1
        gnorm = _amax_abs(gfk)
        if gnorm <= gtol:
            break
        if alpha_k * _vecnorm2(pk) <= 0 * (0 + _vecnorm2(xk)):  # xrtol = 0
            break
        if not np.isfinite(old_fval):
            warnflag = 2
            break
        rhok_inv = np.dot(yk, sk)
        rhok = 1000.0 if rhok_inv == 0.0 else 1.0 / rhok_inv
        a1 = eye - sk[:, np.newaxis] * yk[np.newaxis, :] * rhok
        a2 = eye - yk[:, np.newaxis] * sk[np.newaxis, :] * rhok
        hk = np.dot(a1, np.dot(hk, a2)) + (rhok * sk[:, np.newaxis] * sk[np.newaxis, :])
    if warnflag != 2:
        if k >= maxiter:
            warnflag = 1
        elif np.isnan(gnorm) or np.isnan(old_fval) or np.isnan(xk).any():
            warnflag = 3
    return BFGSResult(x=xk, fun=old_fval, nit=k, status=warnflag)


def _vecnorm2(x: np.ndarray) -> Any:
    # np.sum(np.abs(x) ** 2, axis=0) ** (1.0 / 2) without np.sum's dispatch (the same reduce)
    return np.add.reduce(np.abs(x) ** 2, axis=0) ** (1.0 / 2)


def _amax_abs(x: np.ndarray) -> Any:
    # np.amax(np.abs(x)) without np.amax's dispatch (the same reduce)
    return np.maximum.reduce(np.abs(x), axis=None)


def _line_search_wolfe12(
    fg: Callable, xk: np.ndarray, pk: np.ndarray, gfk: np.ndarray, old_fval: Any, old_old_fval: Any
) -> tuple:
    """scipy's ``_line_search_wolfe12``: ``dcsrch``, then the pure-Python Wolfe search."""
    c1, c2 = 1e-4, 0.9
    # line_search_wolfe1 (amin=1e-100, amax=1e100, xtol=1e-14)
    gval = [gfk]

    def phi(s: Any) -> Any:
        return fg(xk + s * pk)[0]

    def derphi(s: Any) -> Any:
        gval[0] = fg(xk + s * pk)[1]
        return np.dot(gval[0], pk)

    derphi0 = np.dot(gfk, pk)
    # scalar_search_wolfe1
    phi0 = old_fval
    if old_old_fval is not None and derphi0 != 0:
        alpha1 = min(1.0, 1.01 * 2 * (phi0 - old_old_fval) / derphi0)
        if alpha1 < 0:
            alpha1 = 1.0
    else:
        alpha1 = 1.0
    search = _Dcsrch(phi, derphi, c1, c2, 1e-14, 1e-100, 1e100)
    stp, phi1 = search(alpha1, phi0, derphi0)
    if stp is not None:
        return stp, phi1, phi0, gval[0]
    # line_search_wolfe2 (amax=1e100, no extra condition)
    gval2: list[Any] = [None]

    def derphi2(alpha: Any) -> Any:
        gval2[0] = fg(xk + alpha * pk)[1]
        return np.dot(gval2[0], pk)

    alpha_star, phi_star, phi0, derphi_star = _scalar_search_wolfe2(
        phi, derphi2, old_fval, old_old_fval, derphi0, c1, c2, 1e100
    )
    if alpha_star is None:
        raise _LineSearchError
    return alpha_star, phi_star, phi0, None if derphi_star is None else gval2[0]


class _Dcsrch:
    """``scipy.optimize._dcsrch.DCSRCH`` (MINPACK-2 ``dcsrch``), the same arithmetic."""

    def __init__(
        self,
        phi: Callable,
        derphi: Callable,
        ftol: float,
        gtol: float,
        xtol: float,
        stpmin: float,
        stpmax: float,
    ) -> None:
        self.ftol, self.gtol, self.xtol = ftol, gtol, xtol
        self.stpmin, self.stpmax = stpmin, stpmax
        self.phi, self.derphi = phi, derphi

    def __call__(self, alpha1: Any, phi0: Any, derphi0: Any, maxiter: int = 100) -> tuple:
        """``(stp, phi(stp))``, ``stp`` None when the search fails (scipy's WARN/ERROR)."""
        phi1, derphi1 = phi0, derphi0
        task = "START"
        for _ in range(maxiter):
            stp, phi1, derphi1, task = self._iterate(alpha1, phi1, derphi1, task)
            if not np.isfinite(stp):
                return None, phi1
            if task == "FG":
                alpha1 = stp
                phi1 = self.phi(stp)
                derphi1 = self.derphi(stp)
            else:
                break
        else:
            return None, phi1
        if task in ("ERROR", "WARN"):
            return None, phi1
        return stp, phi1

    def _iterate(self, stp: Any, f: Any, g: Any, task: str) -> tuple:
        p5, p66, xtrapl, xtrapu = 0.5, 0.66, 1.1, 4.0
        if task == "START":
            # the argument checks of scipy (all pass for the constant settings used here)
            if (
                stp < self.stpmin
                or stp > self.stpmax
                or g >= 0
                or self.ftol < 0
                or self.gtol < 0
                or self.xtol < 0
                or self.stpmin < 0
                or self.stpmax < self.stpmin
            ):
                return stp, f, g, "ERROR"
            self.brackt = False
            self.stage = 1
            self.finit = f
            self.ginit = g
            self.gtest = self.ftol * self.ginit
            self.width = self.stpmax - self.stpmin
            self.width1 = self.width / p5
            self.stx = 0.0
            self.fx = self.finit
            self.gx = self.ginit
            self.sty = 0.0
            self.fy = self.finit
            self.gy = self.ginit
            self.stmin = 0
            self.stmax = stp + xtrapu * stp
            return stp, f, g, "FG"
        ftest = self.finit + stp * self.gtest
        if self.stage == 1 and f <= ftest and g >= 0:
            self.stage = 2
        # scipy tests these in turn, a later one overwriting an earlier task: the outcome is
        # CONV if the last holds, else WARN if any of the others does
        warn = (
            (self.brackt and (stp <= self.stmin or stp >= self.stmax))
            or (self.brackt and self.stmax - self.stmin <= self.xtol * self.stmax)
            or (stp == self.stpmax and f <= ftest and g <= self.gtest)
            or (stp == self.stpmin and (f > ftest or g >= self.gtest))
        )
        if f <= ftest and abs(g) <= self.gtol * -self.ginit:
            return stp, f, g, "CONV"
        if warn:
            return stp, f, g, "WARN"
        if self.stage == 1 and f <= self.fx and f > ftest:
            fm = f - stp * self.gtest
            fxm = self.fx - self.stx * self.gtest
            fym = self.fy - self.sty * self.gtest
            gm = g - self.gtest
            gxm = self.gx - self.gtest
            gym = self.gy - self.gtest
            with np.errstate(invalid="ignore", over="ignore"):
                tup = _dcstep(
                    self.stx,
                    fxm,
                    gxm,
                    self.sty,
                    fym,
                    gym,
                    stp,
                    fm,
                    gm,
                    self.brackt,
                    self.stmin,
                    self.stmax,
                )
                self.stx, fxm, gxm, self.sty, fym, gym, stp, self.brackt = tup
            self.fx = fxm + self.stx * self.gtest
            self.fy = fym + self.sty * self.gtest
            self.gx = gxm + self.gtest
            self.gy = gym + self.gtest
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                tup = _dcstep(
                    self.stx,
                    self.fx,
                    self.gx,
                    self.sty,
                    self.fy,
                    self.gy,
                    stp,
                    f,
                    g,
                    self.brackt,
                    self.stmin,
                    self.stmax,
                )
            self.stx, self.fx, self.gx, self.sty, self.fy, self.gy, stp, self.brackt = tup
        if self.brackt:
            if abs(self.sty - self.stx) >= p66 * self.width1:
                stp = self.stx + p5 * (self.sty - self.stx)
            self.width1 = self.width
            self.width = abs(self.sty - self.stx)
        if self.brackt:
            self.stmin = min(self.stx, self.sty)
            self.stmax = max(self.stx, self.sty)
        else:
            self.stmin = stp + xtrapl * (stp - self.stx)
            self.stmax = stp + xtrapu * (stp - self.stx)
        stp = _clip(stp, self.stpmin, self.stpmax)
        if (self.brackt and (stp <= self.stmin or stp >= self.stmax)) or (
            self.brackt and self.stmax - self.stmin <= self.xtol * self.stmax
        ):
            stp = self.stx
        return stp, f, g, "FG"


def _dcstep(
    stx: Any,
    fx: Any,
    dx: Any,
    sty: Any,
    fy: Any,
    dy: Any,
    stp: Any,
    fp: Any,
    dp: Any,
    brackt: bool,
    stpmin: Any,
    stpmax: Any,
) -> tuple:
    """``scipy.optimize._dcsrch.dcstep`` (MINPACK-2), the same arithmetic."""
    sgn_dp = np.sign(dp)
    sgn_dx = np.sign(dx)
    sgnd = sgn_dp * sgn_dx
    if fp > fx:
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
        if stp < stx:
            gamma *= -1
        p = (gamma - dx) + theta
        q = ((gamma - dx) + gamma) + dp
        r = p / q
        stpc = stx + r * (stp - stx)
        stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
        stpf = stpc if abs(stpc - stx) <= abs(stpq - stx) else stpc + (stpq - stpc) / 2.0
        brackt = True
    elif sgnd < 0.0:
        theta = 3 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
        if stp > stx:
            gamma *= -1
        p = (gamma - dp) + theta
        q = ((gamma - dp) + gamma) + dx
        r = p / q
        stpc = stp + r * (stx - stp)
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
        brackt = True
    elif abs(dp) < abs(dx):
        theta = 3 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt(max(0, (theta / s) ** 2 - (dx / s) * (dp / s)))
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = (gamma + (dx - dp)) + gamma
        r = p / q
        if r < 0 and gamma != 0:
            stpc = stp + r * (stx - stp)
        elif stp > stx:
            stpc = stpmax
        else:
            stpc = stpmin
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if brackt:
            stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
            if stp > stx:
                stpf = min(stp + 0.66 * (sty - stp), stpf)
            else:
                stpf = max(stp + 0.66 * (sty - stp), stpf)
        else:
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            stpf = _clip(stpf, stpmin, stpmax)
    else:
        if brackt:
            theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp
            s = max(abs(theta), abs(dy), abs(dp))
            gamma = s * np.sqrt((theta / s) ** 2 - (dy / s) * (dp / s))
            if stp > sty:
                gamma = -gamma
            p = (gamma - dp) + theta
            q = ((gamma - dp) + gamma) + dy
            r = p / q
            stpc = stp + r * (sty - stp)
            stpf = stpc
        elif stp > stx:
            stpf = stpmax
        else:
            stpf = stpmin
    if fp > fx:
        sty = stp
        fy = fp
        dy = dp
    else:
        if sgnd < 0:
            sty = stx
            fy = fx
            dy = dx
        stx = stp
        fx = fp
        dx = dp
    stp = stpf
    return stx, fx, dx, sty, fy, dy, stp, brackt


def _scalar_search_wolfe2(
    phi: Callable,
    derphi: Callable,
    phi0: Any,
    old_phi0: Any,
    derphi0: Any,
    c1: float,
    c2: float,
    amax: float,
    maxiter: int = 10,
) -> tuple:
    """``scipy.optimize._linesearch.scalar_search_wolfe2`` without an extra condition."""
    alpha0 = 0
    if old_phi0 is not None and derphi0 != 0:
        alpha1 = min(1.0, 1.01 * 2 * (phi0 - old_phi0) / derphi0)
    else:
        alpha1 = 1.0
    if alpha1 < 0:
        alpha1 = 1.0
    alpha1 = min(alpha1, amax)
    phi_a1 = phi(alpha1)
    phi_a0 = phi0
    derphi_a0 = derphi0
    for i in range(maxiter):
        if alpha1 == 0 or alpha0 > amax:
            return None, phi0, old_phi0, None
        not_first_iteration = i > 0
        if (phi_a1 > phi0 + c1 * alpha1 * derphi0) or ((phi_a1 >= phi_a0) and not_first_iteration):
            alpha_star, phi_star, derphi_star = _zoom(
                alpha0, alpha1, phi_a0, phi_a1, derphi_a0, phi, derphi, phi0, derphi0, c1, c2
            )
            break
        derphi_a1 = derphi(alpha1)
        if abs(derphi_a1) <= -c2 * derphi0:
            alpha_star = alpha1
            phi_star = phi_a1
            derphi_star = derphi_a1
            break
        if derphi_a1 >= 0:
            alpha_star, phi_star, derphi_star = _zoom(
                alpha1, alpha0, phi_a1, phi_a0, derphi_a1, phi, derphi, phi0, derphi0, c1, c2
            )
            break
        alpha2 = 2 * alpha1
        alpha2 = min(alpha2, amax)
        alpha0 = alpha1
        alpha1 = alpha2
        phi_a0 = phi_a1
        phi_a1 = phi(alpha1)
        derphi_a0 = derphi_a1
    else:
        alpha_star = alpha1
        phi_star = phi_a1
        derphi_star = None
    return alpha_star, phi_star, phi0, derphi_star


def _cubicmin(a: Any, fa: Any, fpa: Any, b: Any, fb: Any, c: Any, fc: Any) -> Any:
    """``scipy.optimize._linesearch._cubicmin``."""
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        try:
            cc = fpa
            db = b - a
            dc = c - a
            denom = (db * dc) ** 2 * (db - dc)
            d1 = np.empty((2, 2))
            d1[0, 0] = dc**2
            d1[0, 1] = -(db**2)
            d1[1, 0] = -(dc**3)
            d1[1, 1] = db**3
            [ca, cb] = np.dot(d1, np.asarray([fb - fa - cc * db, fc - fa - cc * dc]).flatten())
            ca /= denom
            cb /= denom
            radical = cb * cb - 3 * ca * cc
            xmin = a + (-cb + np.sqrt(radical)) / (3 * ca)
        except ArithmeticError:
            return None
    if not np.isfinite(xmin):
        return None
    return xmin


def _quadmin(a: Any, fa: Any, fpa: Any, b: Any, fb: Any) -> Any:
    """``scipy.optimize._linesearch._quadmin``."""
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        try:
            d = fa
            c = fpa
            db = b - a * 1.0
            bb = (fb - d - c * db) / (db * db)
            xmin = a - c / (2.0 * bb)
        except ArithmeticError:
            return None
    if not np.isfinite(xmin):
        return None
    return xmin


def _zoom(
    a_lo: Any,
    a_hi: Any,
    phi_lo: Any,
    phi_hi: Any,
    derphi_lo: Any,
    phi: Callable,
    derphi: Callable,
    phi0: Any,
    derphi0: Any,
    c1: float,
    c2: float,
) -> tuple:
    """``scipy.optimize._linesearch._zoom`` without an extra condition."""
    maxiter = 10
    i = 0
    delta1 = 0.2
    delta2 = 0.1
    phi_rec = phi0
    a_rec = 0
    while True:
        dalpha = a_hi - a_lo
        if dalpha < 0:
            a, b = a_hi, a_lo
        else:
            a, b = a_lo, a_hi
        if i > 0:
            cchk = delta1 * dalpha
            a_j = _cubicmin(a_lo, phi_lo, derphi_lo, a_hi, phi_hi, a_rec, phi_rec)
        if (i == 0) or (a_j is None) or (a_j > b - cchk) or (a_j < a + cchk):
            qchk = delta2 * dalpha
            a_j = _quadmin(a_lo, phi_lo, derphi_lo, a_hi, phi_hi)
            if (a_j is None) or (a_j > b - qchk) or (a_j < a + qchk):
                a_j = a_lo + 0.5 * dalpha
        phi_aj = phi(a_j)
        if (phi_aj > phi0 + c1 * a_j * derphi0) or (phi_aj >= phi_lo):
            phi_rec = phi_hi
            a_rec = a_hi
            a_hi = a_j
            phi_hi = phi_aj
        else:
            derphi_aj = derphi(a_j)
            if abs(derphi_aj) <= -c2 * derphi0:
                return a_j, phi_aj, derphi_aj
            if derphi_aj * (a_hi - a_lo) >= 0:
                phi_rec = phi_hi
                a_rec = a_hi
                a_hi = a_lo
                phi_hi = phi_lo
            else:
                phi_rec = phi_lo
                a_rec = a_lo
            a_lo = a_j
            phi_lo = phi_aj
            derphi_lo = derphi_aj
        i += 1
        if i > maxiter:
            return None, None, None
