"""Core-periphery structure of an agglomeration (DESIGN.md "Core-periphery").

Seed 003 describes polarisation inside China's city systems (Chengdu grew by 5.8 million in
ten years while Deyang, Meishan and Ziyang shrank or barely grew) and three shapes of city
systems: gradient (梯度型), dumbbell (哑铃型) and scattered (散点型). This module measures it:

- :func:`gravity_interactions`: a gravity network between city seats
  (:func:`agglo.reference.seats.city_seats`),
  ``T_ij = sqrt(P_i G_i) * sqrt(P_j G_j) / d_ij ** beta`` with geodesic distances in km;
- :func:`coreness`: Borgatti-Everett coreness on the *weighted* network, continuous or
  discrete, with the fit correlation and a permutation test;
- :func:`city_system`: primacy, four-city index, Zipf rank-size exponent, Herfindahl index;
- :func:`core_periphery_gaps`: core/periphery ratios per indicator and year, and whether they
  polarise or diffuse;
- :func:`structure_type`: single core / dumbbell / gradient / scattered by documented rules;
- :func:`core_periphery`: the stage (``agglo run``, ``agglo coreperiphery``): all of the above
  for every agglomeration and year, with :class:`CorePeripheryOptions`, returning a
  :class:`CorePeripheryResult`.

Work of the stage (issue 14): every network's observed fit is made and its permutations drawn
as :func:`coreness` does; the observed continuous fits of networks of one size, and the nulls
of networks of one kind and size (an agglomeration's years), are then solved in one batch
each (the same fits, bit for bit, as one network at a time). When a second core is free (the
1-minute load average), the process is not a daemonic stage worker and the nulls are worth
it, a forked child fits 55 % of every network's permutations while this process makes the
observed fits and the other 45 % (:func:`_solve_nulls_split`; the same fits bit for bit).
Departure from DESIGN.md, which has no process-level parallelism inside a stage: ``agglo run``
runs this stage beside the others (in a daemonic worker: no split there), ``agglo run
--workers 1`` and library calls use the idle core.

Borgatti-Everett (2000) patterns used here, on the off-diagonal pairs ``i < j``:

- *continuous*: maximise ``corr(A_ij, c_i c_j)`` over ``c >= 0``; ``c`` is scaled to
  ``max(c) = 1`` (the correlation does not depend on the scale);
- *discrete*: maximise ``corr(A_ij, delta_ij)`` with ``delta_ij = 1`` when ``i`` or ``j`` is in
  the core (core-core and core-periphery ties), 0 for periphery-periphery pairs. This is the
  pattern of ``cpnet.BE`` (Kojaku & Masuda) and UCINET's "core/periphery ties = 1".

References
----------
Borgatti, S. P. & Everett, M. G. (2000). Models of core/periphery structures. *Social
Networks* 21, 375-395.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import Geod
from scipy import optimize

from agglo._cores import usable_cores
from agglo.analysis._bfgs import minimize_bfgs
from agglo.errors import AggloDataWarning, AggloInputError, ValidationError
from agglo.measures.geodesy import ensure_wgs84
from agglo.options import RUN_SEED, Options, choice_problem, option
from agglo.reference.seats import city_seats, read_seats
from agglo.results import StageResult

__all__ = [
    "DEFAULT_N_PERM",
    "GAP_CORES",
    "METHODS",
    "STRUCTURE_TYPES",
    "TRANSFORMS",
    "CorePeripheryOptions",
    "CorePeripheryResult",
    "city_system",
    "core_periphery",
    "core_periphery_gaps",
    "coreness",
    "gravity_interactions",
    "seat_distances_km",
    "structure_type",
]

log = logging.getLogger(__name__)

#: coreness methods
METHODS = ("continuous", "discrete")
#: transformations of the interaction weights before fitting
TRANSFORMS = ("none", "log")
#: permutations of the significance test (:func:`coreness`, ``[coreperiphery] n_perm``)
DEFAULT_N_PERM = 49
#: core set of the core-periphery gaps (``[coreperiphery] gap_cores``)
GAP_CORES = ("first", "latest", "each")
#: labels returned by :func:`structure_type`
STRUCTURE_TYPES = ("single core", "dumbbell", "gradient", "scattered")
_GEOD = Geod(ellps="WGS84")


# --------------------------------------------------------------------------------------------
# seats and gravity
# --------------------------------------------------------------------------------------------


def seat_distances_km(seats: pd.DataFrame, *, id_col: str = "adcode") -> pd.DataFrame:
    """Geodesic distance (WGS84 ellipsoid) between every pair of seats, in km.

    Parameters
    ----------
    seats
        Points: a GeoDataFrame of points, or a table with ``lon`` and ``lat`` (degrees, WGS84)
        columns; ``id_col`` labels the result.

    Returns
    -------
    pandas.DataFrame
        Symmetric ``id × id`` matrix in km, zero diagonal.

    Examples
    --------
    >>> s = pd.DataFrame({"adcode": ["a", "b"], "lon": [0.0, 0.0], "lat": [0.0, 1.0]})
    >>> round(float(seat_distances_km(s).loc["a", "b"]), 3)  # one degree of latitude
    110.574
    """
    if id_col not in seats:
        raise AggloInputError(f"seats lacks the id column {id_col!r}.")
    if isinstance(seats, gpd.GeoDataFrame):
        pts = ensure_wgs84(seats, what="seats").geometry
        if not (pts.geom_type == "Point").all():
            raise AggloInputError("seats must be points (one per city).")
        lon, lat = pts.x.to_numpy(), pts.y.to_numpy()
    else:
        missing = {"lon", "lat"} - set(seats.columns)
        if missing:
            raise AggloInputError(
                f"seat table lacks column(s) {sorted(missing)}: give lon/lat in WGS84 degrees."
            )
        lon = pd.to_numeric(seats["lon"], errors="coerce").to_numpy(float)
        lat = pd.to_numeric(seats["lat"], errors="coerce").to_numpy(float)
    ids = seats[id_col].astype(str).to_numpy()
    bad = ids[~(np.isfinite(lon) & np.isfinite(lat))]
    if len(bad):
        raise AggloInputError(f"seats without valid coordinates: {list(bad)}.")
    n = len(ids)
    i, j = np.triu_indices(n, 1)
    _, _, d = _GEOD.inv(lon[i], lat[i], lon[j], lat[j])
    out = np.zeros((n, n))
    out[i, j] = out[j, i] = d / 1000.0
    return pd.DataFrame(out, index=pd.Index(ids, name=id_col), columns=pd.Index(ids, name=id_col))


def gravity_interactions(
    cities: pd.DataFrame,
    *,
    mass: str | Sequence[str] = ("population", "gdp"),
    beta: float = 2.0,
    distance: str | pd.DataFrame = "geodesic",
    seats: pd.DataFrame | None = None,
    counties: gpd.GeoDataFrame | None = None,
    id_col: str = "adcode",
) -> pd.DataFrame:
    """Gravity interaction matrix between cities.

    ``T_ij = M_i M_j / d_ij ** beta`` with ``M_i = sqrt(P_i G_i)`` for two mass columns
    (population × GDP, DESIGN.md) or ``M_i`` = the column itself for one; diagonal 0.

    Parameters
    ----------
    cities
        One row per city: ``id_col`` and the mass column(s) (e.g. ``population`` in 10k
        persons, ``gdp`` in 100 million yuan); polygons when seats are derived.
    mass
        One column name or two (their geometric mean is the mass).
    beta
        Distance-decay exponent (>= 0).
    distance
        ``"geodesic"``: km between seats on the WGS84 ellipsoid; or a square DataFrame
        (``id × id``, e.g. travel times in minutes) used as is.
    seats
        Seat points of every city: a GeoDataFrame of points or a table with ``id_col``,
        ``lon``, ``lat`` (WGS84 degrees), e.g. from :func:`agglo.reference.seats.city_seats`.
        Default: that rule applied to ``cities`` (polygons) and ``counties``.
    counties
        Counties for the seat rule (``None``: the city polygons' representative points).
    id_col
        City id column.

    Returns
    -------
    pandas.DataFrame
        Symmetric ``id × id`` matrix (units: mass units² / distance unit^beta); ``attrs``
        records ``mass``, ``beta``, ``distance``.

    Examples
    --------
    >>> c = pd.DataFrame({"adcode": ["a", "b", "c"], "population": [4.0, 1, 1],
    ...                   "gdp": [1.0, 1, 4]})
    >>> seats = pd.DataFrame({"adcode": ["a", "b", "c"], "lon": [0.0, 0, 0],
    ...                       "lat": [0.0, 1, 2]})
    >>> t = gravity_interactions(c, seats=seats)
    >>> round(float(t.loc["a", "b"] * 110.574**2), 3)  # M_a = 2, M_b = 1, d = 110.574 km
    2.0
    """
    masses = [mass] if isinstance(mass, str) else list(mass)
    if len(masses) not in (1, 2):
        raise AggloInputError(f"mass must name one or two columns, got {masses!r}.")
    if not np.isfinite(beta) or beta < 0:
        raise AggloInputError(f"beta must be a finite number >= 0, got {beta!r}.")
    problems = []
    for col in [id_col, *masses]:
        if col not in cities:
            problems.append(f"column {col!r} is missing")
    if problems:
        raise ValidationError(problems, "cities")
    ids = cities[id_col].astype(str)
    if ids.duplicated().any():
        problems.append(f"duplicate ids: {sorted(set(ids[ids.duplicated()]))}")
    if len(ids) < 2:
        problems.append(f"need at least 2 cities, got {len(ids)}")
    values = {}
    for col in masses:
        v = pd.to_numeric(cities[col], errors="coerce")
        bad = ids[~(v >= 0)].tolist()  # NaN and negatives
        if bad:
            problems.append(f"{col!r} must be a number >= 0; missing or negative for {bad}")
        values[col] = v.to_numpy(float)
    if problems:
        raise ValidationError(problems, "cities")
    m = values[masses[0]] if len(masses) == 1 else np.sqrt(values[masses[0]] * values[masses[1]])

    if isinstance(distance, pd.DataFrame):
        d = distance.copy()
        d.index, d.columns = d.index.astype(str), d.columns.astype(str)
        lacking = sorted(set(ids) - set(d.index) | set(ids) - set(d.columns))
        if lacking:
            raise AggloInputError(f"the distance matrix lacks cities {lacking}.")
        dist = d.loc[ids, ids].to_numpy(float)
        dist_label = "user matrix"
    else:
        problem = choice_problem("distance", distance, ("geodesic",))
        if problem:
            raise AggloInputError(problem)
        if seats is None:
            seats = city_seats(cities, counties, id_col=id_col)
        seats = seats.assign(**{id_col: seats[id_col].astype(str)})
        lacking = sorted(set(ids) - set(seats[id_col]))
        if lacking:
            raise AggloInputError(f"no seat for cities {lacking}.")
        seats = seats.drop_duplicates(id_col).set_index(id_col, drop=False).loc[ids]
        dist = seat_distances_km(seats, id_col=id_col).to_numpy()
        dist_label = "geodesic km between seats"
    n = len(ids)
    off = ~np.eye(n, dtype=bool)
    if not (np.isfinite(dist[off]).all() and (dist[off] > 0).all()):
        i, j = np.argwhere(off & ~(dist > 0))[0]
        raise AggloInputError(
            f"distance between {ids.iloc[i]} and {ids.iloc[j]} is {dist[i, j]!r}: distances "
            "between different cities must be positive (two cities share a seat?)."
        )
    with np.errstate(divide="ignore"):
        t = np.where(off, np.outer(m, m) / np.where(off, dist, 1.0) ** beta, 0.0)
    out = pd.DataFrame(t, index=pd.Index(ids, name=id_col), columns=pd.Index(ids, name=id_col))
    out.attrs = {"mass": masses, "beta": float(beta), "distance": dist_label}
    return out


# --------------------------------------------------------------------------------------------
# Borgatti-Everett coreness
# --------------------------------------------------------------------------------------------


_BLAS: list[Any] = []  # the threadpoolctl controller, made on first use
_BLAS_LOCK = threading.Lock()
_BLAS_HELD: list[Any] = []  # [limiter, owner thread, depth] while a thread is inside


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS/LAPACK limited to one thread while the small batched problems are solved.

    The fits decompose thousands of Hessians of at most 40 x 40; OpenBLAS's threads cost
    far more than they save on matrices that small (``np.linalg.eigh`` of 200 matrices of
    26 x 26: 0.02 CPU-s on one thread, 0.8 CPU-s on two, mostly spinning), and more still on
    a loaded machine. Without threadpoolctl the thread count is left as it is. The limit is
    process-wide: nested and concurrent uses share one, set by the first to enter and restored by the last to
    leave (threadpoolctl lets only the thread that set an OpenBLAS limit change it: a last
    leaver in another thread takes that role over first).
    """
    with _BLAS_LOCK:
        if not _BLAS:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:  # pragma: no cover - threadpoolctl is a dependency
                _BLAS.append(None)
            else:
                _BLAS.append(ThreadpoolController())
        if _BLAS[0] is not None:
            if not _BLAS_HELD:
                limiter = _BLAS[0].limit(limits=1, user_api="blas")
                limiter.__enter__()
                _BLAS_HELD[:] = [limiter, threading.current_thread(), 0]
            _BLAS_HELD[2] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            if _BLAS_HELD:
                _BLAS_HELD[2] -= 1
                if not _BLAS_HELD[2]:
                    limiter, owner = _BLAS_HELD[:2]
                    _BLAS_HELD.clear()
                    if owner is not threading.current_thread():
                        _take_blas_control()
                    limiter.__exit__(None, None, None)


def _take_blas_control() -> None:
    """Let this thread change OpenBLAS's limits (recent threadpoolctl lets one thread only)."""
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:  # pragma: no cover - older threadpoolctl: any thread may
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def _pair_values(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    iu = np.triu_indices(a.shape[0], 1)
    return a[iu], np.column_stack(iu)


def _continuous_objective(c: np.ndarray, ac: np.ndarray, na: float, iu: tuple) -> tuple:
    """Negative correlation of the pair weights with ``c_i c_j`` and its gradient."""
    ci, cj = c[iu[0]], c[iu[1]]
    p = ci * cj
    pc = p - np.add.reduce(p) / p.size  # p.mean(), without its dispatch (same value)
    npc = math.sqrt(pc @ pc)
    if npc < 1e-300:
        return 0.0, np.zeros_like(c)
    r = float(ac @ pc) / (na * npc)
    g = ac / (na * npc) - r * pc / npc**2  # d r / d p (both vectors are centred)
    grad = np.bincount(iu[0], weights=g * cj, minlength=len(c)) + np.bincount(
        iu[1], weights=g * ci, minlength=len(c)
    )
    return -r, -grad


def _squared_objective(x: np.ndarray, ac: np.ndarray, na: float, iu: tuple) -> tuple:
    """One problem of :func:`_squared_batch` in pair-vector form (for the BFGS fallback)."""
    f, g = _continuous_objective(x * x, ac, na, iu)
    s = float(x @ x) - 1.0
    return f + s * s, 2.0 * x * g + 4.0 * s * x


def _penalised_objective(c: np.ndarray, ac: np.ndarray, na: float, iu: tuple) -> tuple:
    """The objective in ``c`` with the scale penalty ``(|c|^2 - 1)^2`` (for L-BFGS-B)."""
    f, g = _continuous_objective(c, ac, na, iu)
    s = float(c @ c) - 1.0
    return f + s * s, g + 4.0 * s * c


_SCRATCH = threading.local()  # one work array per thread, see _scratch


def _scratch(shape: tuple[int, ...], slot: str = "pm") -> np.ndarray:
    """A work array of ``shape`` (not zeroed), the same memory on every call of this thread.

    The fits make thousands of ``(B, n, n)`` temporaries of about 1.5 MB; a fresh one of that
    size comes from ``mmap`` and is page-faulted in on every call, which on this machine
    costs as much as the arithmetic on it (``_squared_batch`` without the Hessian: 2.7 ms ->
    0.5 ms for 196 x 31 x 31). One buffer per ``slot`` and thread, grown as needed, is
    faulted in once. A slot holds one temporary at a time: its user must be done with it
    before the next call with that slot, and it is never returned to a caller.
    """
    size = math.prod(shape)
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get(slot)
    if buf is None or buf.size < size:
        buf = bufs[slot] = np.empty(size)
    return buf[:size].reshape(shape)


def _rows(a: np.ndarray, rows: np.ndarray, slot: str) -> np.ndarray:
    """``a[rows]`` in the scratch memory of ``slot`` (``a`` itself when ``rows`` is all of it)."""
    if rows.size == a.shape[0] and (rows == np.arange(rows.size)).all():
        return a
    # mode="clip": the rows are valid, and with the default mode numpy buffers ``out`` (a
    # second copy; 2.1 -> 0.75 ms for 588 x 31 x 31)
    return np.take(a, rows, axis=0, out=_scratch((rows.size, *a.shape[1:]), slot), mode="clip")


def _outer(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[:, :, None] * v[:, None, :]


def _squared_batch(
    x: np.ndarray,
    ac: np.ndarray,
    na: np.ndarray,
    hessian: bool,
    *,
    value_only: bool = False,
    rank5: bool = False,
    parts: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """Objective, gradient and Hessian in ``c = x**2`` for a batch of problems (matrix form).

    ``f(x) = -corr(A_ij, c_i c_j) + (sum(c) - 1)^2`` over pairs ``i < j``, with ``c = x**2``
    (keeps ``c >= 0`` without bounds); the correlation does not depend on the scale of ``c``
    and the penalty (0 at the rescaled optimum) pins it so the Hessian is not singular.
    ``x``: (B, n); ``ac``: (B, n, n) pair weights minus their mean, zero diagonal; ``na``:
    (B,) their norm over pairs. With ``p = c c^T`` off the diagonal, ``P = p - mean(p)``,
    ``S = |P|`` and ``r = <A, P> / (|A| S)`` (sums over pairs), the gradient in ``p`` is
    ``g = A / (|A| S) - r P / S^2`` and the Hessian in ``p``
    ``-(A P^T + P A^T) / (|A| S^3) + 3 r P P^T / S^4 - r (I - J/m) / S^2``, chained to ``c``
    through ``dp_ij/dc = c_j e_i + c_i e_j``. ``rank5``: the Hessian in its rank-5 form (see
    below; 2.5x faster on 196 x 31 x 31, equal to rounding) instead of term by term.
    ``parts``: instead of the Hessian, the vectors :func:`_rank5_hessian` makes it from.
    """
    n = x.shape[1]
    m = n * (n - 1) / 2
    c = x * x
    sc = c.sum(axis=1)
    mu = (sc * sc - (c * c).sum(axis=1)) / (2 * m)  # mean of c_i c_j over pairs
    # the outer product by einsum: the same products as broadcasting, in half the time
    pm = np.einsum("bi,bj->bij", c, c, out=_scratch((x.shape[0], n, n)))
    pm -= mu[:, None, None]
    diag = np.arange(n)
    pm[:, diag, diag] = 0.0
    s2 = 0.5 * np.einsum("bij,bij->b", pm, pm)
    big = s2 > 1e-300
    s2 = np.where(big, s2, 1.0)
    sn = np.sqrt(s2)
    u_a = np.einsum("bij,bj->bi", ac, c)
    r = np.where(big, 0.5 * np.einsum("bi,bi->b", c, u_a) / (na * sn), 0.0)
    pen = sc - 1.0
    f = -r + pen * pen
    if value_only:  # the line search needs f only
        return f, None, None
    u_p = np.einsum("bij,bj->bi", pm, c)
    k_a = np.where(big, 1.0 / (na * sn), 0.0)
    k_p = r / s2
    gc = k_a[:, None] * u_a - k_p[:, None] * u_p  # d r / d c
    grad = -2.0 * x * gc + 4.0 * pen[:, None] * x
    if parts:  # for _rank5_hessian
        return f, grad, (c, sc, mu, u_a, u_p, k_a, k_p, s2, gc, pen)
    if not hessian:
        return f, grad, None
    if not rank5:
        u_1 = sc[:, None] - c
        # hc = -(k_a / s2) (u_a u_p^T + u_p u_a^T) + (3 k_p / s2) u_p u_p^T
        #      - k_p (dtd - u_1 u_1^T / m) + k_a A - k_p P, term by term in scratch memory (the
        # same operations in the same order as the one expression, so the same values)
        shape = pm.shape
        hc = np.multiply(u_a[:, :, None], u_p[:, None, :], out=_scratch(shape, "hc"))
        term = np.multiply(u_p[:, :, None], u_a[:, None, :], out=_scratch(shape, "term"))
        hc += term
        hc *= -(k_a / s2)[:, None, None]
        np.multiply(u_p[:, :, None], u_p[:, None, :], out=term)
        term *= (3.0 * k_p / s2)[:, None, None]
        hc += term
        dtd = np.multiply(c[:, :, None], c[:, None, :], out=_scratch(shape, "dtd"))
        dtd[:, diag, diag] += (c * c).sum(axis=1)[:, None] - 2.0 * c * c
        np.multiply(u_1[:, :, None], u_1[:, None, :], out=term)
        term /= m
        np.subtract(dtd, term, out=term)
        term *= k_p[:, None, None]
        hc -= term
        np.multiply(ac, k_a[:, None, None], out=term)
        hc += term
        np.multiply(pm, k_p[:, None, None], out=term)
        hc -= term
        hx = -4.0 * x[:, :, None] * hc  # returned: fresh memory
        hx *= x[:, None, :]
        hx[:, diag, diag] += -2.0 * gc + 4.0 * pen[:, None]
        np.multiply(x[:, :, None], x[:, None, :], out=term)
        term *= 8.0
        hx += term
        return f, grad, hx
    return f, grad, _rank5_hessian(x, ac, (c, sc, mu, u_a, u_p, k_a, k_p, s2, gc, pen))


def _rank5_hessian(x: np.ndarray, ac: np.ndarray, parts: tuple[np.ndarray, ...]) -> np.ndarray:
    """The Hessian of :func:`_squared_batch` in its rank-5 form, from the per-problem vectors
    ``parts`` that its gradient was computed from (``parts=True`` there): the same values as
    ``_squared_batch(..., True, rank5=True)``, also for a subset of the rows made later."""
    c, sc, mu, u_a, u_p, k_a, k_p, s2, gc, pen = parts
    b, n = x.shape
    m = n * (n - 1) / 2
    u_1 = sc[:, None] - c
    # In c: hc = k_a A - (k_a / s2) (u_a u_p^T + u_p u_a^T) + (3 k_p / s2) u_p u_p^T
    #   - k_p (dtd - u_1 u_1^T / m) - k_p P, with dtd = c c^T + diag(|c|^2 - 2 c^2) and
    #   P = c c^T - mu 11^T + diag(mu - c^2): k_a A plus rank-one terms plus a diagonal.
    # In x (c = x^2): hx = -4 X hc X + diag(-2 gc + 4 pen) + 8 x x^T, so
    # hx = -4 k_a X A X + Y M Y^T + diagonal with Y = X [u_a, u_p, c, u_1, 1] (n x 5):
    # two passes over (B, n, n) for X A X and one small matrix product, instead of one
    # pass per term.
    y = np.stack([x * u_a, x * u_p, x * c, x * u_1, x], axis=2)
    mm = np.zeros((b, 5, 5))
    mm[:, 0, 1] = mm[:, 1, 0] = 4.0 * k_a / s2
    mm[:, 1, 1] = -12.0 * k_p / s2
    mm[:, 2, 2] = 8.0 * k_p
    mm[:, 3, 3] = -4.0 * k_p / m
    mm[:, 4, 4] = 8.0 - 4.0 * k_p * mu
    hx = np.matmul(np.matmul(y, mm), y.transpose(0, 2, 1))  # returned: fresh memory
    xa = np.multiply(((-4.0 * k_a)[:, None] * x)[:, :, None], ac, out=_scratch((b, n, n), "hc"))
    xa *= x[:, None, :]
    hx += xa
    c2 = c * c
    inner = c2.sum(axis=1)[:, None] - 3.0 * c2 + mu[:, None]
    diag = np.arange(n)
    hx[:, diag, diag] += 4.0 * k_p[:, None] * c * inner - 2.0 * gc + 4.0 * pen[:, None]
    return hx


#: largest move of x = sqrt(c) along one eigenvector of the Hessian in one Newton step
_MAX_STEP = 0.25
#: relative spread of c below which a Newton run stops (see _newton_batch)
_MIN_SPREAD = 1e-6
#: second-largest c below this share of the largest: the run is on a star ridge (_star_fit)
_STAR_RATIO = 1e-3


def _second_share(c: np.ndarray) -> np.ndarray:
    """Second-largest value of each row of ``c`` over its largest."""
    top = np.partition(c, -2, axis=1)[:, -2:]
    return top[:, 0] / np.maximum(top[:, 1], 1e-300)


@functools.lru_cache(maxsize=64)
def _star_metric(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``Q = I - 11^T / m`` of :func:`_star_fit` for ``n`` cities and its Cholesky factor,
    made once per size (read-only: shared by every call)."""
    q = np.eye(n - 1) - 1.0 / (n * (n - 1) / 2)
    low = np.linalg.cholesky(q)
    out = (q, low)
    for a in out:
        a.flags.writeable = False
    return out


def _star_fit(ac: np.ndarray, na: float, k: int) -> float:
    """Supremum of the continuous fit on the star ridge of city ``k``, in closed form.

    With ``c_k = 1`` and ``c_j = eps * w_j`` elsewhere, ``c_i c_j`` tends (after scaling by
    ``1 / eps``) to the star pattern ``w_j`` on the pairs ``(k, j)`` and 0 on the others, so
    the fit tends to ``corr(A, star(w))`` without reaching it (a pattern of zeros has no
    correlation). Over pairs, with ``u_j = A_kj - mean(A)``,
    ``corr = u.w / (|A - mean(A)| sqrt(w.Q.w))``, ``Q = I - 11^T / m`` (``m`` pairs), which
    is largest over ``w >= 0`` at the solution of the convex problem ``min w.Q.w - 2 u.w``
    (non-negative least squares after a Cholesky factor of ``Q``). ``ac``: ``(n, n)`` pair
    weights minus their mean, zero diagonal; ``na``: their norm over pairs.
    """
    n = ac.shape[0]
    u = np.delete(ac[k], k)
    q, low = _star_metric(n)
    w, _ = optimize.nnls(low.T, np.linalg.solve(low, u))
    den = float(np.sqrt(w @ q @ w))
    return float(u @ w) / (na * den) if den > 0 else -np.inf


#: fewest matrices x n^3 for which :func:`_stacked_eigh` splits a stack over two threads
_THREADED_EIGH_MIN_WORK = 200_000
_EIGH_POOL: list[ThreadPoolExecutor] = []  # made on first use
#: set while the nulls are split across two processes (both cores busy): no eigh thread
_EIGH_THREAD_OFF: list[bool] = [False]


def _stacked_eigh(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh`` of a stack, on two threads when there are two cores and it pays.

    LAPACK decomposes each matrix of the stack on its own and ``eigh`` releases the GIL, so
    two halves decomposed in two threads give the same values, bit for bit, as one call (the
    BLAS stays on one thread per caller, :func:`_one_blas_thread`); stacks below
    :data:`_THREADED_EIGH_MIN_WORK` (matrices x n^3) stay in this thread, where the hand-off
    would cost more than it saves. So do busy machines: the second thread is used only while
    the 1-minute load average leaves a core free (below ``cores - 0.5``, this process
    included); with both cores taken it waits for a core and costs CPU and wall time (190
    matrices of 31 x 31 at load 4 on 2 cores: 17 ms single, 18.5 ms CPU and 27 ms wall
    threaded).
    """
    b, n = h.shape[:2]
    if b < 2 or b * n**3 < _THREADED_EIGH_MIN_WORK or _EIGH_THREAD_OFF[0] or not _core_free():
        return np.linalg.eigh(h)
    if not _EIGH_POOL:
        _EIGH_POOL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="agglo-eigh"))
    half = b // 2
    other = _EIGH_POOL[0].submit(np.linalg.eigh, h[half:])
    w0, v0 = np.linalg.eigh(h[:half])
    w1, v1 = other.result()
    return np.concatenate([w0, w1]), np.concatenate([v0, v1])


def _core_free() -> bool:
    """Two or more cores and a 1-minute load average below ``cores - 0.5`` (this included)."""
    cores = usable_cores()
    if cores < 2:
        return False
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - no load average (Windows)
        return True
    return load < cores - 0.5


def _eigh_directions(h: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Steps ``-H'^-1 g`` of a batch, ``H'`` the Hessian made safe (see :func:`_newton_batch`).

    A Hessian that is not positive definite is shifted (Levenberg-Marquardt) and its
    eigenvalues floored at ``|g| / _MAX_STEP``: no step moves more than ``_MAX_STEP`` along an
    eigenvector, while near the optimum (``|g| -> 0``) the step is Newton's.
    """
    gn = np.sqrt(np.einsum("bi,bi->b", g, g))[:, None]
    w, v = _stacked_eigh(h)
    w = np.maximum(w + 2.0 * np.maximum(0.0, -w[:, :1]), gn / _MAX_STEP)
    w = np.maximum(w, 1e-12 * np.maximum(1.0, np.abs(w).max(axis=1, keepdims=True)))
    return -np.einsum("bij,bj->bi", v, np.einsum("bji,bj->bi", v, g) / w)


try:  # the stacked Cholesky gufunc; NaN (not an exception) for a matrix that fails
    from numpy.linalg import _umath_linalg

    _CHOLESKY_LO = _umath_linalg.cholesky_lo
except (ImportError, AttributeError):  # pragma: no cover - a numpy without it: eigh only
    _CHOLESKY_LO = None


def _cholesky_exists(
    h: np.ndarray, shift: np.ndarray, sign: float = 1.0, only: np.ndarray | None = None
) -> np.ndarray:
    """Mask of the matrices ``sign H - shift I`` of a stack ``(B, n, n)`` that have a Cholesky
    factor (made in scratch memory). Only those with a positive diagonal (necessary) are
    factorised, and of those only the ones in the mask ``only`` (the others are False)."""
    n = h.shape[1]
    diag = np.arange(n)
    dg = sign * h[:, diag, diag] - shift[:, None]
    out = (dg > 0).all(axis=1)
    if only is not None:
        out &= only
    idx = np.flatnonzero(out)
    if not idx.size:
        return out
    m = np.take(h, idx, axis=0, out=_scratch((idx.size, n, n), "chol_in"), mode="clip")
    if sign != 1.0:
        m *= sign
    m[:, diag, diag] = dg[idx]
    low = _scratch(m.shape, "chol_out")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore", under="ignore"):
        _CHOLESKY_LO(m, signature="d->d", out=low)
    out[idx] = np.isfinite(low[:, :, 0]).all(axis=1)
    return out


def _hessian_bounds(h: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
    """``|H|_inf`` (>= the spectral radius), the backward-error bound ``n 1e-14 |H|_inf`` of a
    Cholesky factorisation or eigendecomposition of ``H``, and the floor ``|g| / _MAX_STEP``."""
    n = g.shape[1]
    norm = np.abs(h, out=_scratch(h.shape, "abs")).sum(axis=2).max(axis=1)
    floor = np.sqrt(np.einsum("bi,bi->b", g, g)) / _MAX_STEP
    return norm, n * 1e-14 * norm, floor


def _safely_positive_definite(
    h: np.ndarray,
    g: np.ndarray,
    bounds: tuple[np.ndarray, ...] | None = None,
    *,
    wide: bool = False,
) -> np.ndarray:
    """Mask of the Hessians that :func:`_eigh_directions` would leave as they are.

    That function changes no eigenvalue of ``H`` when its smallest one is at least
    ``tau = max(|g| / _MAX_STEP, 1e-12 max(1, max|w|))``. A Cholesky factor of
    ``H - sigma I`` with ``sigma = tau + 2 delta``, ``delta = n 1e-14 |H|_inf``
    (``|H|_inf >= max|w|``), exists only if ``lambda_min(H) >= sigma - delta`` (``delta``
    bounds the factorisation's backward error), so a success proves
    ``lambda_min(H) >= tau + delta``: a margin over the floor that the rounding of the
    eigendecomposition (below ``delta`` too) cannot bridge. ``wide``: the margin of the
    observed fits, ``sigma = 2 tau + delta`` (``lambda_min(H) >= 2 tau``), which leaves the
    Hessians with ``tau <= lambda_min < 2 tau`` to ``eigh`` (the same steps as before issue
    14, bit for bit). ``bounds``: :func:`_hessian_bounds` of ``h, g`` if already computed.
    """
    if _CHOLESKY_LO is None:
        return np.zeros(g.shape[0], dtype=bool)
    norm, delta, floor = _hessian_bounds(h, g) if bounds is None else bounds
    tau = np.maximum(floor, 1e-12 * np.maximum(1.0, norm))
    sigma = 2.0 * tau + delta if wide else tau + 2.0 * delta
    return _cholesky_exists(h, sigma) & np.isfinite(norm)


def _safely_below_floor(
    h: np.ndarray,
    g: np.ndarray,
    bounds: tuple[np.ndarray, ...] | None = None,
    only: np.ndarray | None = None,
) -> np.ndarray:
    """Mask of the Hessians whose every eigenvalue :func:`_eigh_directions` floors.

    There the step is ``-g / (|g| / _MAX_STEP)``: no shift (``H`` is positive definite) and
    every eigenvalue raised to the floor ``tau = |g| / _MAX_STEP``. Proved as in
    :func:`_safely_positive_definite`, by two Cholesky factors: of ``H - 2 delta I``
    (``lambda_min(H) >= delta > 0``: the computed eigenvalues are positive, no shift) and of
    ``(tau - 2 delta') I - H`` with ``delta' = n 1e-14 (|H|_inf + tau)`` the bound of that
    matrix (``lambda_max(H) <= tau - delta'``: every computed eigenvalue is at most
    ``tau``); and ``tau >= 1e-12 max(1, |H|_inf)``, so the second floor of
    :func:`_eigh_directions` does not apply. ``bounds`` as in
    :func:`_safely_positive_definite`. ``only``: test just these (the others are False).
    """
    n = g.shape[1]
    if _CHOLESKY_LO is None:
        return np.zeros(g.shape[0], dtype=bool)
    norm, delta, tau = _hessian_bounds(h, g) if bounds is None else bounds
    ok = np.isfinite(norm) & (tau >= 1e-12 * np.maximum(1.0, norm))
    if only is not None:
        ok &= only
    # the upper test first: its diagonal condition (every H_ii below the floor) rules out
    # most Hessians without a factorisation; the conjunction is the same in either order
    ok &= _cholesky_exists(h, 2.0 * n * 1e-14 * (norm + tau) - tau, sign=-1.0, only=ok)
    return ok & _cholesky_exists(h, 2.0 * delta, only=ok)


def _newton_directions(h: np.ndarray, g: np.ndarray, *, fast: bool = False) -> np.ndarray:
    """:func:`_eigh_directions` of a batch, with fast paths for two kinds of Hessians.

    Where the Hessian is safely positive definite (:func:`_safely_positive_definite`) the
    step is the plain Newton step ``-H^-1 g`` (an LU solve, some 10 times cheaper than the
    eigendecomposition on 31 x 31); where every eigenvalue is safely below the floor
    (:func:`_safely_below_floor`) it is the scaled gradient ``-g _MAX_STEP / |g|``. Both are
    what :func:`_eigh_directions` returns there, up to rounding (``~cond(H) eps``); the
    others go through the eigendecomposition. Without ``fast`` only the Newton path, with
    the wide margin (the observed fits: see :func:`_newton_batch`).
    """
    d = np.empty_like(g)
    bounds = _hessian_bounds(h, g)
    safe = _safely_positive_definite(h, g, bounds, wide=not fast)
    flat = _safely_below_floor(h, g, bounds, only=~safe) if fast else np.zeros_like(safe)
    if safe.any():
        d[safe] = -np.linalg.solve(h[safe], g[safe][:, :, None])[:, :, 0]
    if flat.any():
        d[flat] = -g[flat] * (_MAX_STEP / np.sqrt(np.einsum("bi,bi->b", g[flat], g[flat])))[:, None]
    rest = np.flatnonzero(~(safe | flat))
    if rest.size:
        d[rest] = _eigh_directions(_rows(h, rest, "eigh_in"), g[rest])
    return d


def _newton_batch(
    x: np.ndarray,
    ac: np.ndarray,
    na: np.ndarray,
    *,
    gtol: float = 1e-10,
    maxiter: int = 200,
    star_ratio: float | None = None,
    fast: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise :func:`_squared_batch` from every row of ``x`` at once (Newton, line search).

    Each step solves with the Hessian shifted to positive definite where it is not
    (Levenberg-Marquardt, a descent direction also at saddles), moves at most ``_MAX_STEP``
    along each eigenvector (``x`` is of order 1), then backtracks to an Armijo decrease. A problem stops
    when its largest gradient component is below ``gtol`` or a step no longer lowers ``f``.
    Newton converges quadratically: the optima are tighter than a quasi-Newton method's.
    Where the fit's supremum is not attained (a limit pattern: ``c`` on one city and tending
    to 0 elsewhere, or ``c`` tending to a constant) the runs stop once ``f`` no longer
    decreases; returns the points and, per run, False when it stopped at a near-constant ``c``
    (rounding there grows as 1 / spread: those runs are left to BFGS, as before).

    ``fast`` (the permutation nulls, of which only the fit counts): the Hessians in their
    rank-5 form and the steps with both fast paths of :func:`_newton_directions`; equal to
    rounding, but on a limit ridge (where the fit is flat) any rounding moves the point where
    a run stops, by up to ~1e-9 in ``c`` on the bundled data, so the observed fits, whose
    ``c`` is reported, keep the steps and Hessians they had before issue 14, bit for bit.

    Work per step (issue 14, session 10; the same points bit for bit as the plain loop of
    ``tests/test_coreperiphery_newton.py``, every value computed row by row): the state of
    the active runs is kept compacted (gathered when runs finish, not every step); the full
    step is evaluated with its gradient at once, which is both the first trial of the line
    search and the new point of the runs that take it; the halvings of the few runs that
    backtrack far are tried several in one call; ``fast``: the Hessian is made after the
    line search, only for the runs that go on (:func:`_rank5_hessian`).
    """
    x = x.copy()
    n = x.shape[1]
    f, g, h = _squared_batch(x, ac, na, True, rank5=fast)
    act = np.flatnonzero(np.abs(g).max(axis=1) >= gtol)
    flat_end = np.zeros(x.shape[0], dtype=bool)
    # the state of the active runs, compacted when runs finish (not gathered every step)
    xa, fa, ga, ha, naa = x[act], f[act], g[act], h[act], na[act]
    aca = ac if act.size == ac.shape[0] else ac[act]
    share = np.full(act.size, np.inf)
    for _ in range(maxiter):
        if not act.size:
            break
        d = _newton_directions(ha, ga, fast=fast)
        slope = np.einsum("bi,bi->b", ga, d)
        # the full step with its gradient (and Hessian) first: most runs take it, and the
        # values are those of the step's line search and of the new point alike (row by row);
        # fast: the Hessian only where the runs go on from (made from the gradient's parts)
        t = np.ones(act.size)
        xn = xa + t[:, None] * d
        fn, gn, hn = _squared_batch(xn, aca, naa, not fast, parts=fast)
        todo = np.flatnonzero(fn > fa + 1e-4 * t * slope)
        moved = fn < fa
        if todo.size:  # backtracking (Armijo) as before: 40 trial steps in all
            shorter = todo
            t[todo] *= 0.5
            trials = 1
            while todo.size and trials < 40:
                # a few runs left: their next halvings in one call (values row by row, the
                # first acceptable step wins), not one call per halving
                k = min(max(1, _BACKTRACK_ROWS // todo.size), 8, 40 - trials)
                ts = t[todo, None] * _HALVINGS[:k]  # t, t/2, ... (powers of 2: exact)
                rows = np.repeat(todo, k)
                fs = _squared_batch(
                    (xa[todo, None, :] + ts[:, :, None] * d[todo, None, :]).reshape(-1, n),
                    _rows(aca, rows, "search"),
                    naa[rows],
                    False,
                    value_only=True,
                )[0].reshape(todo.size, k)
                rejected = fs > fa[todo, None] + 1e-4 * ts * slope[todo, None]
                taken = np.where(rejected.all(axis=1), k - 1, np.argmin(rejected, axis=1))
                pick = np.arange(todo.size), taken
                fn[todo], t[todo] = fs[pick], ts[pick]
                trials += k
                todo = todo[rejected[pick]]
                t[todo] *= 0.5
            moved[shorter] = fn[shorter] < fa[shorter]
            redo = shorter[moved[shorter]]
            if redo.size:
                xn[redo] = xa[redo] + t[redo, None] * d[redo]
                fn[redo], gn[redo], h_redo = _squared_batch(
                    xn[redo], _rows(aca, redo, "search"), naa[redo], not fast, parts=fast
                )
                if fast:
                    for whole, part in zip(hn, h_redo, strict=True):
                        whole[redo] = part
                else:
                    hn[redo] = h_redo
        stay = ~moved  # no decrease: the run ends where it was
        xn[stay], fn[stay] = xa[stay], fa[stay]
        x[act] = xn
        # c near constant: the pattern tends to an additive one (c_i + c_j), r's sup is not
        # attained and its rounding grows as 1 / spread; stop while r is still exact
        cn = xn * xn
        flat = cn.max(axis=1) - cn.min(axis=1) < _MIN_SPREAD * cn.max(axis=1)
        flat_end[act] = flat
        done = stay | flat | (np.abs(gn).max(axis=1) < gtol)
        if star_ratio is not None:  # on a star ridge and still shrinking onto it: stop
            second = _second_share(cn)
            done |= (second < star_ratio) & (second < share)
            share = second
        if done.any():
            keep = np.flatnonzero(~done)
            act, share = act[keep], share[keep]
            xn, fn, gn, naa = xn[keep], fn[keep], gn[keep], naa[keep]
            hn = tuple(v[keep] for v in hn) if fast else hn[keep]
            aca = aca[keep]
        xa, fa, ga, ha = xn, fn, gn, _rank5_hessian(xn, aca, hn) if fast else hn
    return x, ~flat_end


#: most trial points of one backtracking call of :func:`_newton_batch` made to save calls
_BACKTRACK_ROWS = 32
_HALVINGS = 0.5 ** np.arange(8)

#: largest network fitted by batched Newton on c = x**2 (above: L-BFGS-B with bounds)
_NEWTON_MAX_N = 40


def _continuous_starts(a: np.ndarray, rng: np.random.Generator, restarts: int) -> list:
    """Starting points: leading eigenvector, sqrt(strength), ``restarts`` seeded random ones."""
    randoms = [rng.uniform(0.05, 1.0, a.shape[0]) for _ in range(restarts)]
    return _starts_from(a, np.linalg.eigh(a)[1], randoms)


def _starts_from(a: np.ndarray, v: np.ndarray, randoms: list) -> list:
    """:func:`_continuous_starts` from the eigenvectors ``v`` of ``a`` and the random points."""
    starts = []
    lead = np.abs(v[:, -1])
    if lead.max() > 0:
        starts.append(lead / lead.max())
    strength = np.sqrt(np.clip(a.sum(axis=1), 0, None))
    if strength.max() > 0:
        starts.append(strength / strength.max())
    starts += randoms
    out = []
    for c0 in starts:
        c0 = np.maximum(c0, 1e-3)
        out.append(c0 / np.sqrt(c0 @ c0))
    return out


def _fit_continuous_bfgs(a: np.ndarray, starts: list) -> tuple[float, np.ndarray]:
    """Best fit ``(r, c)`` of ``a`` by BFGS on ``c = x**2`` from each start.

    BFGS is scipy's (``scipy.optimize.minimize(method="BFGS")``, ``gtol = 1e-7``) as
    :func:`agglo.analysis._bfgs.minimize_bfgs` computes it: the same points bit for bit.
    """
    n = a.shape[0]
    iu = np.triu_indices(n, 1)
    ac = a[iu] - a[iu].mean()
    na = float(np.sqrt(ac @ ac))
    best_r, best_c = -np.inf, np.ones(n)
    for c0 in starts:
        c = minimize_bfgs(_squared_objective, np.sqrt(c0), (ac, na, iu), gtol=1e-7, maxiter=2000).x
        c = c * c
        if c.max() <= 0:
            continue
        r = -_continuous_objective(c, ac, na, iu)[0]
        if r > best_r + 1e-12:
            best_r, best_c = r, c
    return best_r, best_c / best_c.max()


def _fit_continuous(
    mats: Sequence[np.ndarray],
    starts: Sequence[list],
    *,
    star_limit: bool = False,
    fast: bool = False,
) -> list[tuple]:
    """Best continuous fit ``(r, c)`` of each matrix from its starts (all solved together).

    ``star_limit``: a Newton run that concentrates on one city (second-largest ``c`` below
    :data:`_STAR_RATIO` of the largest, and shrinking) is stopped and scored by the
    supremum of its star ridge (:func:`_star_fit`), which Newton only approaches ever more
    slowly; ``c`` of such a run is where it stopped (used for the permutation nulls, where
    only the fit counts). ``fast``: see :func:`_newton_batch` (the nulls).
    """
    n = mats[0].shape[0]
    iu = np.triu_indices(n, 1)
    acs, nas = [], []
    for a in mats:
        ac = a[iu] - a[iu].mean()
        acs.append(ac)
        nas.append(float(np.sqrt(ac @ ac)))
    owner = np.repeat(np.arange(len(mats)), [len(s) for s in starts])
    c0 = np.array([c for s in starts for c in s]).reshape(len(owner), n)
    star_r: dict[int, float] = {}
    if n <= _NEWTON_MAX_N:
        acm = np.zeros((len(mats), n, n))
        acm[:, iu[0], iu[1]] = acs
        acm[:, iu[1], iu[0]] = acs
        x, ok = _newton_batch(
            np.sqrt(c0),
            acm[owner],
            np.asarray(nas)[owner],
            star_ratio=_STAR_RATIO if star_limit else None,
            fast=fast,
        )
        for k in np.flatnonzero(~ok):  # rare: degenerate runs, solved one by one as before
            args = (acs[owner[k]], nas[owner[k]], iu)
            x[k] = minimize_bfgs(
                _squared_objective, np.sqrt(c0[k]), args, gtol=1e-7, maxiter=2000
            ).x
        log.debug("coreness: %d of %d Newton runs refitted by BFGS", int((~ok).sum()), ok.size)
        cs = x * x
        if star_limit:
            stars = np.flatnonzero(ok & (_second_share(cs) < _STAR_RATIO))
            ridge: dict[tuple[int, int], float] = {}  # runs of one network on one ridge
            for k in stars:
                key = (int(owner[k]), int(np.argmax(cs[k])))
                if key not in ridge:
                    ridge[key] = _star_fit(acm[key[0]], nas[key[0]], key[1])
                star_r[k] = ridge[key]
    else:  # bounded L-BFGS-B scales to large n (c = 0 is an active bound, not a limit)
        cs = np.empty_like(c0)
        for k, o in enumerate(owner):
            res = optimize.minimize(
                _penalised_objective,
                c0[k],
                args=(acs[o], nas[o], iu),
                jac=True,
                method="L-BFGS-B",
                bounds=[(0.0, None)] * n,
                options={"ftol": 1e-12, "gtol": 1e-8, "maxiter": 5000},
            )
            cs[k] = res.x
    best = [(-np.inf, np.ones(n)) for _ in mats]
    for k, o in enumerate(owner):
        c = cs[k]
        if c.max() <= 0:
            continue
        r = star_r[k] if k in star_r else -_continuous_objective(c, acs[o], nas[o], iu)[0]
        if r > best[o][0] + 1e-12:
            best[o] = (r, c)
    return [(r, c / c.max()) for r, c in best]


def _discrete_r(
    s_pp: np.ndarray,
    n_p: np.ndarray,
    n: int,
    total: float,
    ss: float,
    work: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Correlation of the pair weights with the discrete pattern, from periphery sums.

    ``r = ((total - s_pp) - m mean) / sqrt(max(m - m^2 / pairs, 0) ss)`` (``m`` pairs touching
    the core), ``-inf`` where the denominator is 0; computed in place on two arrays of the
    broadcast shape (the searches call it on millions of masks at once, where every extra
    temporary is a page-faulted allocation). ``work``: two float arrays and a bool array of
    that shape to compute in (the result is the first), e.g. reused over the chunks of the
    exhaustive search; the same values as without.
    """
    npairs = n * (n - 1) / 2
    m = npairs - n_p * (n_p - 1) / 2  # pairs touching the core
    return _discrete_r_of(s_pp, m, np.clip(m - m**2 / npairs, 0, None), n, total, ss, work)


def _discrete_r_of(
    s_pp: np.ndarray,
    m: np.ndarray,
    spread: np.ndarray,
    n: int,
    total: float,
    ss: float,
    work: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """:func:`_discrete_r` given ``m`` and ``spread = max(m - m^2 / pairs, 0)`` (the same values:
    the local search looks both up by periphery size)."""
    mean = total / (n * (n - 1) / 2)
    out, tmp, ok = (None, None, None) if work is None else work
    r = np.subtract(total, s_pp, out=out)
    r -= np.multiply(m, mean, out=tmp)
    den = np.multiply(spread, ss, out=tmp)
    np.sqrt(den, out=den)
    ok = np.greater(den, 0, out=ok)
    np.divide(r, den, out=r, where=ok)
    np.copyto(r, -np.inf, where=np.logical_not(ok, out=ok))
    return r


def _best_of(r: np.ndarray, sizes: np.ndarray) -> int:
    """Index of the best fit; ties go to the smallest core, then the first candidate."""
    best = np.max(r)
    cand = np.flatnonzero(r >= best - 1e-12)
    return int(cand[np.argmin(sizes[cand])])


def _periphery_sums(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``0.5 y^T A y`` for the periphery ``y`` of every core mask ``0 .. 2^n - 1`` (bit i = city i).

    Splits the cities in a low and a high half: the sum is the low half's own pairs plus the
    high half's plus the cross pairs, the last for all mask pairs in one matrix product
    (``O(2^n)`` memory and time instead of ``O(2^n n^2)``). ``out``: a contiguous array of
    ``2^n`` to write the sums to (returned).
    """
    n = a.shape[0]
    lo_n = n // 2
    hi_n = n - lo_n

    def periphery(k: int) -> np.ndarray:
        return ((np.arange(1 << k)[:, None] & (1 << np.arange(k))) == 0).astype(float)

    yl, yh = periphery(lo_n), periphery(hi_n)
    al, ah, alh = a[:lo_n, :lo_n], a[lo_n:, lo_n:], a[:lo_n, lo_n:]
    sl = 0.5 * np.einsum("ij,jk,ik->i", yl, al, yl)
    sh = 0.5 * np.einsum("ij,jk,ik->i", yh, ah, yh)
    cross = yh @ (yl @ alh).T  # (high mask, low mask)
    grid = np.add(sh[:, None], sl[None, :], out=None if out is None else out.reshape(cross.shape))
    grid += cross
    return grid.ravel()  # index = high << lo_n | low


def _pair_stats(mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and centred sum of squares of the pair weights of a stack ``(P, n, n)``."""
    iu = np.triu_indices(mats.shape[1], 1)
    vals = mats[:, iu[0], iu[1]]
    total = vals.sum(axis=1)
    ss = ((vals - vals.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    return total, ss


#: masks per chunk of the exhaustive search (ties are resolved chunk by chunk, see below)
_MASK_CHUNK = 1 << 14
#: most (problem x mask) periphery sums held at once by the exhaustive search
_MASK_BUDGET = 1 << 22


def _discrete_exhaustive_batch(mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive discrete fit of each network of a stack ``(P, n, n)``: ``r`` (P,), core (P, n).

    Every core mask ``1 .. 2^n - 1`` is scored from its periphery sum (:func:`_periphery_sums`);
    the mask sizes are shared by all networks, so a stack of permutations costs one matrix
    product each. Within a chunk of :data:`_MASK_CHUNK` masks the best fit wins, ties (within
    1e-12) going to the smallest core, then the first mask; a later chunk replaces it only if
    better by 1e-12, or as good with a smaller core.
    """
    n_mats, n = mats.shape[:2]
    total, ss = _pair_stats(mats)
    bits = 1 << np.arange(n)
    sizes = np.zeros(1 << n, dtype=np.int64)
    for b in bits:
        sizes += (np.arange(1 << n) & b) > 0
    n_p = (n - sizes).astype(float)
    best_r = np.full(n_mats, -np.inf)
    best_mask = np.zeros(n_mats, dtype=np.int64)
    best_size = np.full(n_mats, n)
    small_sizes = sizes.astype(np.int8)  # n < 127: the tie-break in a smaller array
    group = max(1, _MASK_BUDGET >> n)
    chunk = min(_MASK_CHUNK, (1 << n) - 1)
    # the work arrays of every chunk, made once (each is page-faulted memory when fresh)
    s_all = np.empty((min(group, n_mats), 1 << n))
    work = (np.empty((len(s_all), chunk)), np.empty((len(s_all), chunk)))
    flags = (np.empty((len(s_all), chunk), dtype=bool), np.empty((len(s_all), chunk), dtype=bool))
    for g0 in range(0, n_mats, group):
        sl = slice(g0, min(g0 + group, n_mats))
        for i, a in enumerate(mats[sl]):
            _periphery_sums(a, out=s_all[i])
        rows = np.arange(sl.stop - sl.start)
        tot, sq = total[sl, None], ss[sl, None]
        br, bm, bs = best_r[sl], best_mask[sl], best_size[sl]
        for start in range(1, 1 << n, _MASK_CHUNK):
            stop = min(start + _MASK_CHUNK, 1 << n)
            cut = (slice(0, rows.size), slice(0, stop - start))
            r = _discrete_r(
                s_all[cut[0], start:stop],
                n_p[None, start:stop],
                n,
                tot,
                sq,
                work=(work[0][cut], work[1][cut], flags[0][cut]),
            )
            size = sizes[start:stop]
            cand = np.greater_equal(r, r.max(axis=1, keepdims=True) - 1e-12, out=flags[1][cut])
            sz = np.where(cand, small_sizes[None, start:stop], np.int8(n + 1))
            k = np.argmax(sz == sz.min(axis=1, keepdims=True), axis=1)
            rk, sk = r[rows, k], size[k]
            better = (rk > br + 1e-12) | ((np.abs(rk - br) <= 1e-12) & (sk < bs))
            br[better], bm[better], bs[better] = rk[better], start + k[better], sk[better]
        best_r[sl], best_mask[sl], best_size[sl] = br, bm, bs
    return best_r, (best_mask[:, None] & bits) > 0


def _fit_discrete_exhaustive(a: np.ndarray) -> tuple[float, np.ndarray]:
    """Exhaustive discrete fit of one network: ``(r, core)``."""
    r, core = _discrete_exhaustive_batch(a[None])
    return float(r[0]), core[0]


def _local_starts(a: np.ndarray, rng: np.random.Generator, restarts: int) -> np.ndarray:
    """Starts of the local search ``(S, n)``: the top-k cities by strength for k = 1 .. n-2,
    then ``restarts`` seeded random sets (an empty one gets one seeded random city)."""
    n = a.shape[0]
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-a.sum(axis=1), kind="stable")] = np.arange(n)
    top = rank[None, :] < np.arange(1, max(2, n - 1))[:, None]
    randoms = [rng.random(n) < rng.uniform(0.1, 0.6) for _ in range(restarts)]
    out = np.concatenate([top, np.array(randoms, dtype=bool).reshape(-1, n)])
    for core in out:
        if not core.any():
            core[rng.integers(n)] = True
    return out


def _discrete_local_batch(mats: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best-improvement single-node flips from every start of every network, all at once.

    ``mats``: (P, n, n); ``starts``: (P, S, n) core masks. Each step flips, in every run that
    can still improve, the city whose flip raises the fit most (the first such city on ties);
    a run stops when no flip raises it by more than 1e-12. Per network, the best run wins
    (taken in start order: better by 1e-12, or as good with a smaller core). Returns the fits
    (P,) and cores (P, n).
    """
    n_mats, n_starts, n = starts.shape
    total, ss = _pair_stats(mats)
    tot, sq = total[:, None], ss[:, None]
    core = starts.copy()
    active = np.ones((n_mats, n_starts), dtype=bool)
    final = np.full((n_mats, n_starts), -np.inf)
    # m and the spread of _discrete_r for every periphery size -1 .. n + 1, looked up below
    # (the same arithmetic as on the flipped sizes themselves)
    sizes = np.arange(-1.0, n + 2.0)
    npairs = n * (n - 1) / 2
    m_of = npairs - sizes * (sizes - 1) / 2
    spread_of = np.clip(m_of - m_of**2 / npairs, 0, None)
    while active.any():
        y = (~core).astype(float)
        rowp = np.matmul(y, mats)  # A is symmetric: row i of A @ y
        s_pp = 0.5 * np.einsum("psi,psi->ps", y, rowp)
        n_p = y.sum(axis=2)
        cur = _discrete_r(s_pp, n_p, n, tot, sq)
        # the flips of the runs still going (elementwise: the values of all runs at once)
        pa, sa = np.nonzero(active)
        rowp_a, core_a, s_pp_a = rowp[pa, sa], core[pa, sa], s_pp[pa, sa, None]
        # flipping i: periphery -> core removes its periphery ties, core -> periphery adds
        s_new = np.subtract(s_pp_a, rowp_a)
        np.add(s_pp_a, rowp_a, out=s_new, where=core_a)
        size_new = np.where(core_a, 2, 0) + n_p[pa, sa].astype(np.intp)[:, None]  # n_p -/+ 1
        r = _discrete_r_of(
            s_new, m_of[size_new], spread_of[size_new], n, total[pa, None], ss[pa, None]
        )
        i = np.argmax(r, axis=1)
        up = r[np.arange(pa.size), i] > cur[pa, sa] + 1e-12
        final[pa[~up], sa[~up]] = cur[pa[~up], sa[~up]]
        p, s, k = pa[up], sa[up], i[up]
        core[p, s, k] = ~core[p, s, k]
        active[pa[~up], sa[~up]] = False
    best_r = np.full(n_mats, -np.inf)
    best_core = np.zeros((n_mats, n), dtype=bool)
    sizes = core.sum(axis=2)
    for p in range(n_mats):
        br, bk = -np.inf, -1
        for s in range(n_starts):
            cur = final[p, s]
            if cur > br + 1e-12 or (
                bk >= 0 and abs(cur - br) <= 1e-12 and sizes[p, s] < sizes[p, bk]
            ):
                br, bk = cur, s
        best_r[p], best_core[p] = br, core[p, bk]
    return best_r, best_core


def _fit_discrete_local(
    a: np.ndarray, rng: np.random.Generator, restarts: int
) -> tuple[float, np.ndarray]:
    """Local search of one network from :func:`_local_starts` (seeded): ``(r, core)``."""
    r, core = _discrete_local_batch(a[None], _local_starts(a, rng, restarts)[None])
    return float(r[0]), core[0]


def _core_from_continuous(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Core = the top-k cities by coreness, k maximising the discrete fit (1 <= k <= n-2)."""
    n = a.shape[0]
    vals, _ = _pair_values(a)
    total = float(vals.sum())
    ss = float(((vals - vals.mean()) ** 2).sum())
    order = np.argsort(-c, kind="stable")
    rs = []
    for k in range(1, n - 1):
        y = np.ones(n)
        y[order[:k]] = 0.0
        rs.append(_discrete_r(np.array([0.5 * y @ a @ y]), np.array([n - k]), n, total, ss)[0])
    k = int(np.argmax(rs)) + 1
    core = np.zeros(n, dtype=bool)
    core[order[:k]] = True
    return core


def _fit(
    a: np.ndarray, method: str, rng: np.random.Generator, restarts: int, exhaustive_max: int
) -> tuple[float, np.ndarray, np.ndarray]:
    if method == "continuous":
        starts = _continuous_starts(a, rng, restarts)
        ((r, c),) = _fit_continuous([a], [starts])
        return _continuous_result(a, starts, r, c)
    if a.shape[0] <= exhaustive_max:
        r, core = _fit_discrete_exhaustive(a)
    else:
        r, core = _fit_discrete_local(a, rng, 5 * restarts)
    return r, core.astype(float), core


def _continuous_result(
    a: np.ndarray, starts: list, r: float, c: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """The observed continuous fit ``(r, c, core)`` from Newton's best ``(r, c)`` of ``starts``."""
    interior = _second_share(c[None])[0] >= _STAR_RATIO and c.min() < (1 - 1e-3) * c.max()
    if a.shape[0] <= _NEWTON_MAX_N and not interior:
        # a limit pattern (c on one city, -> 0 elsewhere, or c -> constant): the observed
        # fit is also run with scipy's BFGS from the same starts, which can go further
        # along the ridge where Newton stops; the better fit is kept
        r_q, c_q = _fit_continuous_bfgs(a, starts)
        if r <= r_q + 1e-12:
            r, c = r_q, c_q
    return r, c, _core_from_continuous(a, c)


def _fit_observed_batch(jobs: list[_CorenessJob]) -> list[_CorenessJob]:
    """Jobs whose observed continuous fit was left for later (``defer``), fitted in batches.

    The Newton runs of every network of one size are solved together (row by row, so the
    same ``(r, c)`` bit for bit as :func:`_fit` one network at a time), then each network's
    result is finished as :func:`_fit` does (:func:`_continuous_result`).
    """
    out = list(jobs)
    groups: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        if job.pending is not None:
            groups.setdefault(job.pending[0].shape[0], []).append(i)
    for idx in groups.values():
        fits = _fit_continuous([jobs[i].pending[0] for i in idx], [jobs[i].pending[1] for i in idx])
        for i, (r, c) in zip(idx, fits, strict=True):
            a, starts = jobs[i].pending
            r, values, core = _continuous_result(a, starts, r, c)
            out[i] = replace(jobs[i], r=float(r), values=values, core=core, pending=None)
    return out


@dataclass(frozen=True)
class _NullProblems:
    """The permutation nulls of one network, drawn and ready to fit (:func:`_null_problems`).

    ``kind``: ``"continuous"``, ``"local"`` (discrete local search) or ``"exhaustive"``;
    ``mats``: the permuted networks ``(n_perm, n, n)``; ``starts``: per network, the list of
    continuous starts, or the local-search starts ``(n_perm, S, n)``; ``None`` for exhaustive.
    """

    kind: str
    mats: np.ndarray
    starts: Any

    def key(self) -> tuple:
        """Problems with the same key are solved in one batch by :func:`_solve_nulls`."""
        shape = np.shape(self.starts)[1:] if self.kind == "local" else ()
        return (self.kind, self.mats.shape[1], shape)


def _null_problems(
    a: np.ndarray,
    method: str,
    prng: np.random.Generator,
    n_perm: int,
    restarts: int,
    exhaustive_max: int,
    progress: bool,
) -> _NullProblems:
    """``n_perm`` seeded permutations of the pair weights of ``a`` and the starts of their fits.

    The generator is drawn in the same order as fitting one permutation after the other
    (permutation, then that fit's random starts), so the nulls do not depend on batching;
    the eigenvectors of the continuous starts come from one stacked ``eigh`` (the same
    LAPACK call per matrix: the same starts as one by one).
    """
    vals, pairs = _pair_values(a)
    n = a.shape[0]
    it = range(n_perm)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"coreness nulls ({method})")
    local = method == "discrete" and n > exhaustive_max
    mats = np.zeros((n_perm, n, n))
    starts, randoms, perms = [], [], []
    for k in it:
        perms.append(prng.permutation(vals))
        if local:  # the starts need the network now
            mats[k, pairs[:, 0], pairs[:, 1]] = perms[-1]
            mats[k] += mats[k].T
            starts.append(_local_starts(mats[k], prng, 5 * restarts))
        elif method == "continuous":
            randoms.append([prng.uniform(0.05, 1.0, n) for _ in range(restarts)])
    if not local and n_perm:  # all networks at once (the same values)
        mats[:, pairs[:, 0], pairs[:, 1]] = perms
        mats += mats.transpose(0, 2, 1)
    if method == "continuous":
        vecs = np.linalg.eigh(mats)[1]
        starts = [_starts_from(m, v, r) for m, v, r in zip(mats, vecs, randoms, strict=True)]
        return _NullProblems("continuous", mats, starts)
    if local:
        return _NullProblems("local", mats, np.stack(starts))
    return _NullProblems("exhaustive", mats, None)


def _solve_nulls(problems: Sequence[_NullProblems]) -> list[np.ndarray]:
    """Fits of the permutation nulls of several networks, in order.

    The nulls of every network of one kind and size (e.g. an agglomeration's years) are
    solved in one batch: each batched solver treats its problems independently (row by row,
    the same operations whatever the batch), so the fits equal those of one network at a
    time, bit for bit, while the per-step costs of the batch (Python, small LAPACK calls, the
    tail of the last few Newton runs) are paid once per group instead of once per network.
    """
    out: list[np.ndarray | None] = [None] * len(problems)
    groups: dict[tuple, list[int]] = {}
    for i, prob in enumerate(problems):
        if len(prob.mats):
            groups.setdefault(prob.key(), []).append(i)
        else:
            out[i] = np.empty(0)
    for (kind, _, _), idx in groups.items():
        mats = np.concatenate([problems[i].mats for i in idx])
        if kind == "continuous":
            starts = [s for i in idx for s in problems[i].starts]
            fits = _fit_continuous(list(mats), starts, star_limit=True, fast=True)
            r = np.array([f for f, _ in fits])
        elif kind == "local":
            r = _discrete_local_batch(mats, np.concatenate([problems[i].starts for i in idx]))[0]
        else:
            r = _discrete_exhaustive_batch(mats)[0]
        bounds = np.cumsum([0] + [len(problems[i].mats) for i in idx])
        for k, i in enumerate(idx):
            out[i] = r[bounds[k] : bounds[k + 1]]
    return out  # type: ignore[return-value]


#: least work (permuted networks x starts x n^3, summed) for which the nulls are split across
#: two processes; the bundled stage has ~29 M (~2 CPU-s), a fork and its result ~0.03 s
_SPLIT_MIN_WORK = 4_000_000


def _null_work(problems: Sequence[_NullProblems]) -> int:
    """Rough cost of fitting ``problems``: rows x n^3 (continuous: every start is a row)."""
    work = 0
    for prob in problems:
        n = prob.mats.shape[1]
        rows = sum(len(s) for s in prob.starts) if prob.kind == "continuous" else len(prob.mats)
        work += rows * n**3 if prob.kind != "exhaustive" else len(prob.mats) * (1 << n)
    return work


def _split_obstacle(problems: Sequence[_NullProblems]) -> str | None:
    """Why the nulls are fitted in this process alone, or None when a forked child may share.

    Not below :data:`_SPLIT_MIN_WORK`; not without two usable cores and a free one (the
    1-minute load average, as :func:`_core_free`: under load the child would only take CPU
    time from the other jobs); not without the ``fork`` start method; not from a daemonic
    process (``agglo run`` runs this stage beside the others in one, where the other core is
    taken anyway; daemonic processes may not have children); not while another thread runs
    (the child would inherit the locks it holds), except the eigh helper, tqdm's monitor and
    the others of :data:`agglo._forked.FORK_SAFE_THREADS` (:func:`agglo._forked.fork_obstacle`).
    """
    from agglo._forked import fork_obstacle

    if sum(len(p.mats) for p in problems) < 2 or _null_work(problems) < _SPLIT_MIN_WORK:
        return "little work"
    if not _core_free():
        return "no free core"
    return fork_obstacle()


def _solve_nulls_child(problems: Sequence[_NullProblems]) -> list[np.ndarray]:
    """:func:`_solve_nulls` in a forked child (its copy of the eigh thread pool is dead)."""
    _EIGH_POOL.clear()
    _EIGH_THREAD_OFF[0] = True
    return _solve_nulls(problems)


#: share of every network's permutations fitted by this process when the nulls are split (the
#: child takes the rest; this process also makes the observed fits meanwhile)
_SPLIT_SHARE = 0.45


def _solve_nulls_split(
    problems: Sequence[_NullProblems], meanwhile: Callable[[], Any] | None = None
) -> tuple[list[np.ndarray], Any]:
    """:func:`_solve_nulls`, on two processes when a second core is free and it pays.

    Every network's permutations are cut in two: a forked child
    (:class:`agglo._forked.ForkedCall`) fits the last ~55 %, this process runs ``meanwhile``
    (the observed fits of the stage), then fits the first ~45 % (:data:`_SPLIT_SHARE`), both
    batched by kind and size as in :func:`_solve_nulls`. Each permutation is fitted on its
    own (row by row), so the joined parts equal one process's fits bit for bit; only wall
    time changes (most of the stage's CPU time is in the nulls). When :func:`_split_obstacle`
    names a reason, everything is fitted here. Returns the fits and ``meanwhile()``.
    """
    obstacle = _split_obstacle(problems)
    if obstacle is not None:
        log.debug("coreness nulls in one process: %s", obstacle)
        done = meanwhile() if meanwhile is not None else None
        return _solve_nulls(problems), done
    from agglo._forked import ForkedCall

    def part(prob: _NullProblems, first: bool) -> _NullProblems:
        k = int(len(prob.mats) * _SPLIT_SHARE)
        sl = slice(0, k) if first else slice(k, None)
        starts = None if prob.starts is None else prob.starts[sl]
        return _NullProblems(prob.kind, prob.mats[sl], starts)

    child = ForkedCall.start(
        _solve_nulls_child, [part(p, False) for p in problems], name="coreperiphery nulls"
    )
    off = _EIGH_THREAD_OFF[0]
    _EIGH_THREAD_OFF[0] = True  # both cores are busy
    try:
        done = meanwhile() if meanwhile is not None else None
        mine = _solve_nulls([part(p, True) for p in problems])
    except BaseException:
        child.kill()
        raise
    finally:
        _EIGH_THREAD_OFF[0] = off
    theirs = child.result()
    log.debug("coreness nulls split across two processes")
    return [np.concatenate([a, b]) for a, b in zip(mine, theirs, strict=True)], done


def _null_fits(
    a: np.ndarray,
    method: str,
    prng: np.random.Generator,
    n_perm: int,
    restarts: int,
    exhaustive_max: int,
    progress: bool,
) -> np.ndarray:
    """Fits of ``n_perm`` seeded permutations of the pair weights, solved in one batch."""
    prob = _null_problems(a, method, prng, n_perm, restarts, exhaustive_max, progress)
    return _solve_nulls([prob])[0]


def coreness(
    interactions: pd.DataFrame,
    *,
    method: str = "continuous",
    seed: int = RUN_SEED,
    n_perm: int = DEFAULT_N_PERM,
    restarts: int = 2,
    exhaustive_max: int = 16,
    transform: str = "none",
    progress: bool = False,
) -> pd.DataFrame:
    """Borgatti-Everett coreness of each city on a weighted, symmetric network.

    ``continuous``: ``c >= 0`` maximising ``corr(A_ij, c_i c_j)`` over pairs ``i < j``
    (Newton with the analytic Hessian on ``c = x**2`` for up to 40 cities, every start and
    permutation solved in one batch; an observed fit on a limit pattern also by scipy's BFGS
    keeping the better, a permutation run on a star ridge scored by its closed-form supremum;
    bounded L-BFGS-B with an analytic gradient above), started from the leading eigenvector, the square root of strength and
    ``restarts`` seeded random points; the best optimum is kept); ``c`` is scaled to
    ``max = 1``.
    Its ``core`` flag marks the top-k cities by coreness, with k chosen to maximise the
    discrete fit below.

    ``discrete``: the core set maximising ``corr(A_ij, delta_ij)``, ``delta_ij = 1`` if ``i``
    or ``j`` is in the core and 0 between two periphery cities; exhaustive search over all
    subsets for ``n <= exhaustive_max`` (ties: the smallest core), otherwise best-improvement
    node flips from many seeded starts. ``coreness`` is 1 in the core, 0 outside.

    Significance: the off-diagonal weights are permuted among the pairs ``n_perm`` times
    (seeded; the matrix stays symmetric) and refitted with the same method and number of
    starts; ``p_value =
    (1 + #{null fit >= observed fit}) / (n_perm + 1)``. Because every null is maximised too,
    the test accounts for the optimisation's upward bias.

    Parameters
    ----------
    interactions
        Square, symmetric DataFrame (same labels on rows and columns), e.g. from
        :func:`gravity_interactions`; the diagonal is ignored.
    method
        ``"continuous"`` or ``"discrete"``.
    seed
        Seed of the random starts and the permutations; results are reproducible.
    n_perm
        Number of permutations (0: no test, ``p_value`` is NaN).
    restarts
        Random starts per fit (continuous; and for discrete local search, 5x as many).
    exhaustive_max
        Largest number of cities searched exhaustively (2^n subsets) by ``discrete``.
    transform
        ``"none"`` or ``"log"`` (``log1p(A / median positive weight)``, damping the heavy tail
        of gravity weights) applied to the weights before fitting.
    progress
        Show a progress bar over permutations.

    Returns
    -------
    pandas.DataFrame
        Indexed by city id: ``coreness`` (float, max 1), ``core`` (bool). ``attrs`` holds
        ``method``, ``fit`` (the correlation), ``p_value``, ``n_perm``, ``null_mean``,
        ``null_q95``, ``seed``, ``transform``.

    Examples
    --------
    >>> import numpy as np
    >>> ids = list("abcde")
    >>> core = np.array([1, 1, 0, 0, 0])
    >>> a = np.maximum.outer(core, core) * 1.0  # ties touching the core
    >>> np.fill_diagonal(a, 0)
    >>> out = coreness(pd.DataFrame(a, ids, ids), method="discrete", n_perm=0)
    >>> out.index[out.core].tolist(), float(out.attrs["fit"])
    (['a', 'b'], 1.0)
    """
    job = _prepare_coreness(
        interactions,
        method=method,
        seed=seed,
        n_perm=n_perm,
        restarts=restarts,
        exhaustive_max=exhaustive_max,
        transform=transform,
        progress=progress,
    )
    with _one_blas_thread():
        nulls = _solve_nulls_split([job.nulls])[0][0] if job.nulls is not None else None
    return _finish_coreness(job, nulls)


@dataclass(frozen=True)
class _CorenessJob:
    """One :func:`coreness` call with its observed fit made and its nulls drawn (not fitted)."""

    index: pd.Index
    method: str
    r: float
    values: np.ndarray
    core: np.ndarray
    nulls: _NullProblems | None
    n_perm: int
    seed: int
    transform: str
    #: ``(a, starts)`` of an observed continuous fit left for :func:`_fit_observed_batch`
    pending: tuple[np.ndarray, list] | None = None


def _prepare_coreness(
    interactions: pd.DataFrame,
    *,
    method: str,
    seed: int,
    n_perm: int,
    restarts: int,
    exhaustive_max: int,
    transform: str,
    progress: bool,
    defer: bool = False,
) -> _CorenessJob:
    """Validation, the observed fit and the drawn nulls of :func:`coreness` (same arguments).

    ``defer``: a continuous observed fit only draws its starts (``pending``; the generator of
    the fit is used for nothing else), for :func:`_fit_observed_batch`.
    """
    problems = [
        p
        for p in (
            choice_problem("method", method, METHODS),
            choice_problem("transform", transform, TRANSFORMS),
        )
        if p
    ]
    if problems:
        raise ValidationError(problems, "coreness")
    a = _validate_matrix(interactions)
    if transform == "log":
        pos = a[a > 0]
        if (a < 0).any() or not len(pos):
            raise AggloInputError("transform='log' needs non-negative weights, some positive.")
        a = np.log1p(a / np.median(pos))
    np.fill_diagonal(a, 0.0)
    n = a.shape[0]
    if n < 3:
        raise AggloInputError(f"coreness needs at least 3 cities, got {n}.")
    vals, _ = _pair_values(a)
    if np.ptp(vals) == 0:
        raise AggloInputError(
            "all interactions are equal: the correlation with a core-periphery pattern is "
            "undefined."
        )
    fit_seq, null_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(fit_seq)
    nulls = None
    pending = None
    with _one_blas_thread():
        if defer and method == "continuous":
            pending = (a, _continuous_starts(a, rng, restarts))
            r, values, core = np.nan, np.empty(0), np.empty(0, dtype=bool)
        else:
            r, values, core = _fit(a, method, rng, restarts, exhaustive_max)
        if n_perm > 0:
            prng = np.random.default_rng(null_seq)
            nulls = _null_problems(a, method, prng, n_perm, restarts, exhaustive_max, progress)
    return _CorenessJob(
        index=interactions.index.copy(),
        method=method,
        r=float(r),
        values=values,
        core=core,
        nulls=nulls,
        n_perm=int(n_perm),
        seed=int(seed),
        transform=transform,
        pending=pending,
    )


def _finish_coreness(job: _CorenessJob, nulls: np.ndarray | None) -> pd.DataFrame:
    """The :func:`coreness` table of ``job`` given its null fits (``None`` without a test)."""
    n_perm, r = job.n_perm, job.r
    if nulls is None:
        nulls = np.full(n_perm, np.nan)
    p = (1 + int(np.sum(nulls >= r - 1e-12))) / (n_perm + 1) if n_perm > 0 else np.nan
    out = pd.DataFrame({"coreness": job.values, "core": job.core.astype(bool)}, index=job.index)
    out.attrs = {
        "method": job.method,
        "fit": float(r),
        "p_value": float(p),
        "n_perm": int(n_perm),
        "null_mean": float(np.mean(nulls)) if n_perm else float("nan"),
        "null_q95": float(np.quantile(nulls, 0.95)) if n_perm else float("nan"),
        "seed": job.seed,
        "transform": job.transform,
    }
    log.debug("coreness %s: fit %.4f, p %.4f", job.method, r, p)
    return out


def _validate_matrix(m: pd.DataFrame) -> np.ndarray:
    if not isinstance(m, pd.DataFrame):
        raise AggloInputError("interactions must be a square DataFrame (id × id).")
    if m.shape[0] != m.shape[1] or not m.index.equals(m.columns):
        raise AggloInputError(
            "interactions must be square with the same labels, in the same order, on rows and "
            f"columns; got {m.shape[0]} rows and {m.shape[1]} columns."
        )
    if m.index.has_duplicates:
        raise AggloInputError("interactions have duplicate city ids.")
    a = m.to_numpy(dtype=float, copy=True)
    np.fill_diagonal(a, 0.0)
    if not np.isfinite(a).all():
        raise AggloInputError("interactions contain missing or infinite values.")
    if not np.allclose(a, a.T, rtol=1e-9, atol=0):
        raise AggloInputError("interactions must be symmetric (A_ij == A_ji).")
    return (a + a.T) / 2


# --------------------------------------------------------------------------------------------
# city system
# --------------------------------------------------------------------------------------------


def city_system(
    cities: pd.DataFrame,
    size: str = "population",
    *,
    by: str | Sequence[str] | None = None,
    id_col: str = "adcode",
    name_col: str | None = "name_zh",
) -> pd.DataFrame:
    """Size distribution of a city system: primacy, four-city index, Zipf, Herfindahl.

    With sizes sorted ``P1 >= P2 >= ...`` and shares ``s_i = P_i / sum(P)``:

    - ``p1_p2 = P1 / P2`` (primacy), ``p2_p3 = P2 / P3``;
    - ``four_city = P1 / (P2 + P3 + P4)`` (four-city index; NaN with fewer than 4 cities);
    - ``zipf_q``: ``q`` in the OLS fit ``ln P_r = ln K - q ln r`` (rank-size rule; ``q = 1``
      is Zipf's law, ``q > 1`` a concentrated system, ``q < 1`` an even one) and ``zipf_r2``;
    - ``hhi = sum(s_i^2)`` (Herfindahl; 1/n for equal cities, 1 for one city);
      ``top_share = s_1``.

    Parameters
    ----------
    cities
        One row per city with a numeric ``size`` column (> 0).
    size
        Column with the size (e.g. ``population``, 10k persons).
    by
        Group column(s), e.g. ``"agglomeration_id"``; ``None``: one system (group ``"all"``).
    id_col, name_col
        Columns identifying the largest cities in the output (``name_col`` optional).

    Returns
    -------
    pandas.DataFrame
        One row per group: ``n_cities``, ``total``, ``p1_id``, ``p2_id``, ``p3_id`` (and
        ``p1_name``), ``p1``, ``p2``, ``p1_p2``, ``p2_p3``, ``four_city``, ``zipf_q``,
        ``zipf_r2``, ``hhi``, ``top_share``.

    Examples
    --------
    >>> c = pd.DataFrame({"adcode": list("abcd"), "population": [120.0, 60, 40, 30]})
    >>> s = city_system(c, name_col=None).iloc[0]
    >>> float(s.p1_p2), float(s.four_city), round(float(s.zipf_q), 6)  # 120/60, 120/130; P=120/r
    (2.0, 0.9230769230769231, 1.0)
    """
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    missing = [c for c in [size, id_col, *keys] if c not in cities]
    if missing:
        raise AggloInputError(f"cities lacks column(s) {missing}.")
    v = pd.to_numeric(cities[size], errors="coerce")
    bad = cities.loc[~(v > 0), id_col].tolist()
    if bad:
        raise AggloInputError(
            f"{size!r} must be a number > 0 for every city (Zipf uses its logarithm); "
            f"missing or not positive for {bad}. Drop those cities first."
        )
    df = cities.assign(_size=v)
    groups = df.groupby(keys, sort=True, dropna=False) if keys else [("all", df)]
    rows = []
    for key, g in groups:
        g = g.sort_values("_size", ascending=False, kind="stable")
        p = g["_size"].to_numpy(float)
        ids = g[id_col].astype(str).tolist()
        n = len(p)
        row: dict[str, Any] = {}
        if keys:
            key = key if isinstance(key, tuple) else (key,)
            row.update(dict(zip(keys, key, strict=True)))
        else:
            row["group"] = key
        share = p / p.sum()
        row.update(
            n_cities=n,
            total=float(p.sum()),
            p1_id=ids[0],
            p2_id=ids[1] if n > 1 else None,
            p3_id=ids[2] if n > 2 else None,
        )
        if name_col is not None and name_col in g:
            row["p1_name"] = g[name_col].iloc[0]
        row.update(
            p1=float(p[0]),
            p2=float(p[1]) if n > 1 else np.nan,
            p1_p2=float(p[0] / p[1]) if n > 1 else np.nan,
            p2_p3=float(p[1] / p[2]) if n > 2 else np.nan,
            four_city=float(p[0] / p[1:4].sum()) if n > 3 else np.nan,
        )
        if n > 2:
            x, y = np.log(np.arange(1, n + 1)), np.log(p)
            slope, _ = np.polyfit(x, y, 1)
            r = np.corrcoef(x, y)[0, 1] if np.ptp(y) > 0 else np.nan
            row.update(zipf_q=float(-slope), zipf_r2=float(r**2))
        else:
            row.update(zipf_q=np.nan, zipf_r2=np.nan)
        row.update(hhi=float((share**2).sum()), top_share=float(share[0]))
        rows.append(row)
    return pd.DataFrame(rows).set_index(keys or ["group"])


# --------------------------------------------------------------------------------------------
# core/periphery gaps
# --------------------------------------------------------------------------------------------


def _direction(indicator: str, directions: Mapping[str, int] | None) -> int:
    if directions and indicator in directions:
        d = int(directions[indicator])
        if d not in (-1, 1):
            raise AggloInputError(f"direction of {indicator!r} must be 1 or -1, got {d!r}.")
        return d
    from agglo.reference.registry import VARIABLES

    var = VARIABLES.get(indicator)
    return -1 if var is not None and var.direction < 0 else 1


def core_periphery_gaps(
    panel: pd.DataFrame,
    cores: pd.DataFrame,
    *,
    indicators: Sequence[str] | None = None,
    directions: Mapping[str, int] | None = None,
    group_col: str = "agglomeration_id",
    tol: float = 0.0,
) -> pd.DataFrame:
    """Core mean / periphery mean of each indicator, per agglomeration and year, and its trend.

    ``ratio = mean(core cities) / mean(periphery cities)`` (unweighted city means). The
    core's *advantage* is ``ratio`` for indicators where higher is better (and for size
    variables such as population or GDP, direction 0 in the registry) and ``1 / ratio`` where
    lower is better (``income_ratio``, ``pm25``). Between consecutive years of a group,
    ``change = advantage_t / advantage_{t-1} - 1``; ``trend`` is ``"polarising"`` when
    ``change > tol`` (the core pulls ahead, or its lead widens), ``"diffusing"`` when
    ``change < -tol`` (the periphery catches up), else ``"stable"``; empty for the first year.

    Parameters
    ----------
    panel
        Tidy ``adcode, year, indicator, value``.
    cores
        ``adcode``, ``group_col``, ``core`` (bool) for every member city (periphery = members
        with ``core`` false); with a ``year`` column the core set may differ by year, without
        it the same set is used for all years (recommended: fixed groups make the change
        between years a change of the cities, not of the grouping).
    indicators
        Indicators to report (default: all in the panel).
    directions
        ``indicator -> 1 or -1`` overriding the registry.
    group_col
        Agglomeration column of ``cores``.
    tol
        Relative change of the advantage below which the trend is ``"stable"``.

    Returns
    -------
    pandas.DataFrame
        ``group_col, indicator, year, direction, n_core, n_periphery, core_mean,
        periphery_mean, ratio, advantage, change, trend``.

    Examples
    --------
    >>> panel = pd.DataFrame({"adcode": ["a", "b", "a", "b"], "year": [2010, 2010, 2020, 2020],
    ...                       "indicator": "population", "value": [10.0, 5, 15, 5]})
    >>> cores = pd.DataFrame({"adcode": ["a", "b"], "agglomeration_id": "x",
    ...                       "core": [True, False]})
    >>> g = core_periphery_gaps(panel, cores)
    >>> g[["year", "ratio", "trend"]].to_dict("list")
    {'year': [2010, 2020], 'ratio': [2.0, 3.0], 'trend': [None, 'polarising']}
    """
    problems = [f"panel lacks column {c!r}" for c in ("adcode", "year", "indicator", "value")]
    problems = [
        p
        for p, c in zip(problems, ("adcode", "year", "indicator", "value"), strict=True)
        if c not in panel
    ]
    problems += [
        f"cores lacks column {c!r}" for c in ("adcode", group_col, "core") if c not in cores
    ]
    if tol < 0:
        problems.append(f"tol must be >= 0, got {tol!r}")
    if problems:
        raise ValidationError(problems, "core_periphery_gaps")
    by_year = "year" in cores
    cols = ["adcode", group_col, "core", *(["year"] if by_year else [])]
    cs = cores.loc[:, cols].assign(
        adcode=cores["adcode"].astype(str), core=cores["core"].astype(bool)
    )
    p = panel.assign(adcode=panel["adcode"].astype(str))
    if indicators is not None:
        absent = sorted(set(indicators) - set(p["indicator"]))
        if absent:
            raise AggloInputError(f"indicators not in the panel: {absent}.")
        p = p[p["indicator"].isin(indicators)]
    p = p.dropna(subset=["value"])
    merged = p.merge(cs, on=["adcode", "year"] if by_year else ["adcode"], how="inner")
    keys = [group_col, "indicator", "year"]
    agg = (
        merged.groupby([*keys, "core"])["value"]
        .agg(["mean", "size"])
        .unstack("core")
        .reindex(columns=pd.MultiIndex.from_product([["mean", "size"], [True, False]]))
    )
    out = pd.DataFrame(
        {
            "n_core": agg[("size", True)].fillna(0).astype(int),
            "n_periphery": agg[("size", False)].fillna(0).astype(int),
            "core_mean": agg[("mean", True)],
            "periphery_mean": agg[("mean", False)],
        }
    ).reset_index()
    out.insert(2, "direction", [_direction(i, directions) for i in out["indicator"]])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = out["core_mean"] / out["periphery_mean"].where(out["periphery_mean"] != 0)
    out["ratio"] = ratio
    out["advantage"] = np.where(out["direction"] < 0, 1.0 / ratio, ratio)
    out = out.sort_values(keys, kind="stable").reset_index(drop=True)
    prev = out.groupby([group_col, "indicator"])["advantage"].shift(1)
    out["change"] = out["advantage"] / prev - 1.0
    trend = np.select(
        [out["change"] > tol, out["change"] < -tol, out["change"].notna()],
        ["polarising", "diffusing", "stable"],
        default="",
    )
    out["trend"] = pd.Series(trend, dtype=object).replace("", None)
    return out


# --------------------------------------------------------------------------------------------
# structure type
# --------------------------------------------------------------------------------------------


def structure_type(
    system: pd.DataFrame,
    cores: pd.DataFrame | None = None,
    *,
    single_primacy: float = 2.5,
    single_max_cores: int = 1,
    dumbbell_primacy: float = 2.0,
    dumbbell_gap: float = 2.0,
    zipf_range: tuple[float, float] = (0.8, 1.25),
    min_r2: float = 0.9,
    id_col: str = "adcode",
) -> pd.DataFrame:
    """Shape of each city system: single core, dumbbell, gradient or scattered (seed 003).

    Rules, tried in this order on the output of :func:`city_system` (``P1 >= P2 >= P3`` are
    the sizes of the three largest cities, the core set comes from :func:`coreness`):

    1. ``"single core"``: ``P1/P2 >= single_primacy`` and at most ``single_max_cores`` core
       cities (without ``cores``: the primacy rule alone);
    2. ``"dumbbell"`` (哑铃型): ``P1/P2 < dumbbell_primacy`` and ``P2/P3 >= dumbbell_gap`` (two
       comparable cities far above the third) and, with ``cores``, both in the core;
    3. ``"gradient"`` (梯度型): ``zipf_q`` within ``zipf_range`` and ``zipf_r2 >= min_r2`` (a
       steady rank-size decline);
    4. ``"scattered"`` (散点型): anything else (flat or irregular size distribution).

    Parameters
    ----------
    system
        Output of :func:`city_system` (index = group keys; needs ``p1_p2``, ``p2_p3``,
        ``zipf_q``, ``zipf_r2``, ``p1_id``, ``p2_id``).
    cores
        Optional: the group key column(s), ``id_col`` and ``core`` (bool) per city.
    single_primacy, single_max_cores, dumbbell_primacy, dumbbell_gap, zipf_range, min_r2
        Thresholds of the rules above.

    Returns
    -------
    pandas.DataFrame
        On ``system``'s index: ``structure_type``, ``n_core`` (NaN without cores) and ``rule``
        (the values that decided).

    Examples
    --------
    >>> c = pd.DataFrame({"adcode": list("abcd"), "population": [100.0, 90, 20, 15]})
    >>> structure_type(city_system(c, name_col=None)).structure_type.tolist()
    ['dumbbell']
    """
    need = {"p1_p2", "p2_p3", "zipf_q", "zipf_r2", "p1_id", "p2_id"} - set(system.columns)
    if need:
        raise AggloInputError(f"system lacks column(s) {sorted(need)}: pass city_system(...).")
    lo, hi = zipf_range
    if not lo <= hi:
        raise AggloInputError(
            f"zipf_range must be (low, high) with low <= high, got {zipf_range!r}."
        )
    keys = [k for k in system.index.names if k is not None]
    core_sets: dict[Any, set[str]] = {}
    if cores is not None:
        missing = [c for c in (id_col, "core") if c not in cores]
        gkeys = [k for k in keys if k in cores]
        if missing:
            raise AggloInputError(f"cores lacks column(s) {missing}.")
        if gkeys != keys and len(system) > 1:
            raise AggloInputError(
                f"cores needs the group column(s) {keys} to match the systems' index."
            )
        sel = cores[cores["core"].astype(bool)]
        if gkeys == keys and keys != ["group"]:
            for key, g in sel.groupby(keys):
                k = key if len(keys) > 1 else (key[0] if isinstance(key, tuple) else key)
                core_sets[k] = set(g[id_col].astype(str))
        else:
            core_sets[system.index[0]] = set(sel[id_col].astype(str))
    rows = []
    for key, s in system.iterrows():
        cs = core_sets.get(key, set()) if cores is not None else None
        n_core = np.nan if cs is None else len(cs)
        p12, p23, q, r2 = s["p1_p2"], s["p2_p3"], s["zipf_q"], s["zipf_r2"]
        top2_core = cs is None or {str(s["p1_id"]), str(s["p2_id"])} <= cs
        vals = f"P1/P2={p12:.2f}, P2/P3={p23:.2f}, q={q:.2f}, R2={r2:.2f}"
        if cs is not None:
            vals += f", {len(cs)} core cities"
        if p12 >= single_primacy and (cs is None or len(cs) <= single_max_cores):
            kind, why = "single core", f"P1/P2 >= {single_primacy}"
        elif p12 < dumbbell_primacy and p23 >= dumbbell_gap and top2_core:
            kind, why = "dumbbell", f"P1/P2 < {dumbbell_primacy} and P2/P3 >= {dumbbell_gap}"
        elif lo <= q <= hi and r2 >= min_r2:
            kind, why = "gradient", f"q in [{lo}, {hi}] and R2 >= {min_r2}"
        else:
            kind, why = "scattered", "no other rule applies"
        rows.append({"structure_type": kind, "n_core": n_core, "rule": f"{why} ({vals})"})
    return pd.DataFrame(rows, index=system.index)


# --------------------------------------------------------------------------------------------
# the stage: every agglomeration and year
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorePeripheryOptions(Options):
    """Options of :func:`core_periphery` (``[coreperiphery]``, ``agglo coreperiphery``)."""

    section = "coreperiphery"
    mass: str | tuple[str, ...] = option(
        ("population", "gdp"), help="Panel indicator(s) whose geometric mean is the mass."
    )
    beta: float = option(2.0, help="Distance decay exponent of the gravity model.", minimum=0)
    size: str = option("population", help="Panel indicator of city size (city system).")
    methods: str | tuple[str, ...] = option(
        ("continuous", "discrete"), help="Coreness methods: continuous and/or discrete."
    )
    n_perm: int = option(DEFAULT_N_PERM, help="Permutations of the significance test.", minimum=0)
    restarts: int = option(2, help="Random restarts of the continuous fit.", minimum=1)
    exhaustive_max: int = option(
        16, help="Largest group whose discrete core is searched exhaustively.", minimum=1
    )
    transform: str = option("none", help="Weights before fitting.", choices=TRANSFORMS)
    seats_file: str | None = option(
        None,
        help="CSV of city seats: adcode, lon, lat (WGS84; they win over agglo.reference.seats).",
    )
    gap_cores: str = option(
        "first",
        help="Core set of the gaps: the first year's, the latest or each year's.",
        choices=GAP_CORES,
    )
    gap_tol: float = option(0.0, help="Tolerance of the core-periphery gaps.", minimum=0)
    single_primacy: float = option(2.5, help="Single core when P1/P2 is at least this.")
    single_max_cores: int = option(1, help="Most core cities of a single-core system.", minimum=1)
    dumbbell_primacy: float = option(2.0, help="Dumbbell (哑铃型) when P1/P2 is below this ...")
    dumbbell_gap: float = option(2.0, help="... and P2/P3 is at least this.")
    zipf_range: tuple[float, ...] = option(
        (0.8, 1.25), help="Gradient (梯度型) when the Zipf exponent lies in low,high ..."
    )
    min_r2: float = option(
        0.9, help="... and the rank-size fit has at least this R².", minimum=0, maximum=1
    )

    def extra_problems(self) -> list[str]:
        if not self.method_list or any(m not in METHODS for m in self.method_list):
            return [
                f"coreperiphery.methods must be a list from {list(METHODS)}; got {self.methods!r}"
            ]
        if len(self.zipf_range) != 2:
            return [f"coreperiphery.zipf_range must be two numbers; got {self.zipf_range!r}"]
        return []

    @property
    def method_list(self) -> list[str]:
        """``methods`` as a list."""
        return [self.methods] if isinstance(self.methods, str) else list(self.methods)

    @property
    def mass_list(self) -> list[str]:
        """``mass`` as a list."""
        return [self.mass] if isinstance(self.mass, str) else list(self.mass)

    def structure_rules(self) -> dict[str, Any]:
        """The keyword arguments of :func:`structure_type`."""
        return {
            "single_primacy": self.single_primacy,
            "single_max_cores": self.single_max_cores,
            "dumbbell_primacy": self.dumbbell_primacy,
            "dumbbell_gap": self.dumbbell_gap,
            "zipf_range": tuple(self.zipf_range),
            "min_r2": self.min_r2,
        }

    def recorded(self) -> dict[str, Any]:
        """The options as recorded with the outputs (``methods`` always a list)."""
        out = self.to_dict()
        out["methods"] = self.method_list
        return out


#: columns of :attr:`CorePeripheryResult.excluded`
EXCLUDED_COLUMNS = ("agglomeration_id", "year", "adcode", "name_zh", "reason")


@dataclass(frozen=True)
class CorePeripheryResult(StageResult):
    """Result of :func:`core_periphery`.

    Attributes
    ----------
    coreness
        Long: ``agglomeration_id, year, adcode, name_zh, method, coreness, core``.
    fit
        Per agglomeration, year and method: ``n_cities, n_core, core_cities, fit, p_value,
        n_perm, null_mean, null_q95``.
    city_system
        :func:`city_system` per agglomeration and year.
    structure
        :func:`structure_type` per agglomeration and year (``structure_type, n_core, rule``).
    gaps
        :func:`core_periphery_gaps` with one core set (``options.gap_cores``) per agglomeration.
    layer
        Member city polygons with ``coreness_<year>``, ``core_<year>`` and the latest
        ``structure_type``.
    excluded
        Cities left out of an agglomeration-year (no mass or size) and agglomeration-years
        skipped (fewer than 3 cities; ``adcode`` empty): ``agglomeration_id, year, adcode,
        name_zh, reason``.
    seats
        The seat of every member city (:func:`agglo.reference.seats.city_seats`).
    options, seed
        What was run.
    """

    coreness: pd.DataFrame
    fit: pd.DataFrame
    city_system: pd.DataFrame
    structure: pd.DataFrame
    gaps: pd.DataFrame
    layer: gpd.GeoDataFrame
    excluded: pd.DataFrame
    seats: gpd.GeoDataFrame
    options: CorePeripheryOptions
    seed: int

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {
            "coreness": self.coreness,
            "coreness_fit": self.fit,
            "city_system": self.city_system,
            "structure_type": self.structure,
            "core_periphery_gaps": self.gaps,
        }
        if len(self.excluded):
            out["coreperiphery_excluded"] = self.excluded
        return out

    def layers(self) -> dict[str, gpd.GeoDataFrame]:
        return {"core_periphery": self.layer}

    def metadata(self) -> dict[str, Any]:
        o = self.options
        return {
            "options": o.recorded(),
            "seed": self.seed,
            "method": f"Borgatti-Everett coreness ({', '.join(o.method_list)}) on the gravity "
            f"network (beta {o.beta}), {o.n_perm} permutations, seed {self.seed}",
        }

    def layer_metadata(self) -> dict[str, dict[str, Any]]:
        return {
            "core_periphery": {
                "description": (
                    "member cities: Borgatti-Everett coreness (continuous, max 1) and discrete "
                    "core flag per year on the gravity network sqrt(P G)_i sqrt(P G)_j / "
                    "d_ij^beta; structure_type of the agglomeration in the latest year"
                ),
                "units": {"coreness_<year>": "0-1 (continuous coreness)", "core_<year>": "bool"},
                "options": self.options.recorded(),
                "seed": self.seed,
            }
        }

    def summary_lines(self) -> list[str]:
        """Per agglomeration, the latest year: core set, fit, p and structure type."""
        fit = self.fit
        struct = self.structure.set_index(["agglomeration_id", "year"])
        latest = int(fit["year"].max())
        last_method = fit["method"].iloc[-1]
        rows = fit[(fit["year"] == latest) & (fit["method"] == last_method)]
        return [
            f"Core-periphery {row.agglomeration_id} {latest}: core {row.core_cities} "
            f"({row.method} fit {row.fit:.2f}, p {row.p_value:.3f}); structure "
            f"{struct.loc[(row.agglomeration_id, latest), 'structure_type']}"
            for row in rows.itertuples()
        ]

    def notes(self) -> list[str]:
        if not len(self.excluded):
            return []
        skipped = self.excluded[self.excluded["adcode"].isna()]
        dropped = self.excluded[self.excluded["adcode"].notna()]
        out = []
        if len(dropped):
            out.append(
                f"Core-periphery: {len(dropped)} city-year(s) left out for missing "
                f"{'/'.join(sorted({*self.options.mass_list, self.options.size}))} "
                "(table coreperiphery_excluded)"
            )
        if len(skipped):
            out.append(
                "Core-periphery skipped (fewer than 3 cities): "
                + ", ".join(f"{r.agglomeration_id} {r.year}" for r in skipped.itertuples())
            )
        return out


def _coreness_jobs(jobs: list[tuple[pd.DataFrame, str]], **kwargs: Any) -> list[pd.DataFrame]:
    """:func:`coreness` of every ``(interactions, method)`` job, in order, in this thread.

    Each job is validated and its permutations drawn as :func:`coreness` does; the observed
    continuous fits of networks of one size are then solved in one batch
    (:func:`_fit_observed_batch`), and the nulls of all jobs, those of one kind and size in
    one batch (:func:`_solve_nulls_split`): the same fits as job by job, bit for bit, for
    less work per Newton step. The jobs are not spread over threads. The BFGS refits no longer
    switch warning filters (:func:`agglo.analysis._bfgs.minimize_bfgs`, unlike scipy's line
    search with its process-wide ``warnings.catch_warnings`` before Python 3.14), but the
    large-network path still calls ``scipy.optimize.minimize`` (L-BFGS-B), whose thread
    safety was not checked. ``agglo run`` runs this stage beside the others in its own process
    instead (:mod:`agglo._forked`).
    """
    prepared = [_prepare_coreness(t, method=m, defer=True, **kwargs) for t, m in jobs]
    tested = [i for i, job in enumerate(prepared) if job.nulls is not None]
    with _one_blas_thread():
        solved, prepared = _solve_nulls_split(
            [prepared[i].nulls for i in tested],  # type: ignore[misc]
            meanwhile=lambda: _fit_observed_batch(prepared),
        )
    nulls: list[np.ndarray | None] = [None] * len(prepared)
    for i, r in zip(tested, solved, strict=True):
        nulls[i] = r
    return [_finish_coreness(job, r) for job, r in zip(prepared, nulls, strict=True)]


def core_periphery(
    cities: gpd.GeoDataFrame,
    panel: pd.DataFrame,
    options: CorePeripheryOptions | None = None,
    *,
    counties: gpd.GeoDataFrame | None = None,
    seats: pd.DataFrame | None = None,
    years: Sequence[int] | None = None,
    agglomerations: Sequence[str] | None = None,
    seed: int = RUN_SEED,
    progress: bool = False,
) -> CorePeripheryResult:
    """Core-periphery structure of every agglomeration and year.

    Per agglomeration (member cities of ``cities``) and year of ``panel``: the gravity network
    from the mass indicators (:func:`gravity_interactions`, geodesic km between the seats of
    :func:`agglo.reference.seats.city_seats`), Borgatti-Everett coreness with each method and a
    permutation test (:func:`coreness`), the city-size system (:func:`city_system`) and its
    shape (:func:`structure_type`, with the discrete core set when computed). Cities without a
    mass or size value in a year are left out of that year (an
    :class:`~agglo.errors.AggloDataWarning` names them); an agglomeration-year with fewer than
    3 cities is skipped (warned as well); both are listed in ``excluded``. The core/periphery
    gaps of every panel indicator (:func:`core_periphery_gaps`) use one core set per
    agglomeration for all years (``gap_cores = "first"``: the first year's, by default), so a
    change between years is a change of the cities, not of the grouping.

    Parameters
    ----------
    cities
        City polygons with ``adcode``, ``name_zh``, ``agglomeration_id`` (members: not null).
    panel
        Tidy ``adcode, year, indicator, value`` with the mass and size indicators.
    options
        :class:`CorePeripheryOptions` (default: its defaults).
    counties
        Counties for the seat rule (urban districts); ``None``: the city polygons' points.
    seats
        Given seats (``adcode, lon, lat`` or points); they win over the rule. Default: those
        of ``options.seats_file``, if set.
    years, agglomerations
        Subsets (default: every year of the panel, every agglomeration).
    seed
        Seed of every random start and permutation.
    progress
        Progress bars over permutations.

    Returns
    -------
    CorePeripheryResult

    Examples
    --------
    >>> import agglo
    >>> opts = agglo.CorePeripheryOptions(n_perm=99)
    >>> res = agglo.core_periphery(cities, panel, opts, counties=counties)  # doctest: +SKIP
    >>> res.tables()["coreness_fit"]  # doctest: +SKIP
    """
    opts = options if options is not None else CorePeripheryOptions()
    if not isinstance(opts, CorePeripheryOptions):
        raise AggloInputError(
            f"options must be CorePeripheryOptions, got {type(opts).__name__} "
            "(use CorePeripheryOptions.from_dict for a mapping)."
        )
    mass, size = opts.mass_list, opts.size
    needed = sorted({*mass, size})
    absent = [v for v in needed if v not in set(panel["indicator"])]
    if absent:
        raise AggloInputError(
            f"[coreperiphery] the panel lacks indicator(s) {absent} needed for the gravity "
            "masses and city sizes."
        )
    members = cities[cities["agglomeration_id"].notna()]
    members = members[["adcode", "name_zh", "agglomeration_id", "geometry"]]
    if agglomerations is not None:
        unknown = sorted(set(agglomerations) - set(members["agglomeration_id"]))
        if unknown:
            raise AggloInputError(
                f"unknown agglomeration(s) {unknown}; "
                f"valid: {sorted(members['agglomeration_id'].unique())}."
            )
        members = members[members["agglomeration_id"].isin(agglomerations)]
    all_years = sorted(int(y) for y in panel["year"].unique())
    years = all_years if years is None else sorted(int(y) for y in years)
    missing_years = sorted(set(years) - set(all_years))
    if missing_years:
        raise AggloInputError(f"year(s) {missing_years} not in the panel (it has {all_years}).")
    if seats is None and opts.seats_file:
        seats = read_seats(opts.seats_file)
    seat_points = city_seats(members, counties, seats=seats)
    wide = (
        panel[panel["indicator"].isin(needed) & panel["adcode"].isin(members["adcode"])]
        .pivot_table(index=["adcode", "year"], columns="indicator", values="value", aggfunc="first")
        .reset_index()
    )
    long_rows, fit_rows, systems, structures, excluded = [], [], [], [], []
    networks = []  # (agg, year, data, interactions), fitted below
    for agg, group in members.groupby("agglomeration_id", sort=True):
        for year in years:
            data = group.merge(wide[wide["year"] == year], on="adcode", how="left")
            ok = data[needed].notna().all(axis=1) & (data[size] > 0)
            if not ok.all():
                left = data.loc[~ok]
                warnings.warn(
                    f"core-periphery {agg} {year}: no {'/'.join(needed)} for "
                    + ", ".join(f"{r.name_zh} ({r.adcode})" for r in left.itertuples())
                    + "; left out of that year",
                    AggloDataWarning,
                    stacklevel=2,
                )
                excluded += [
                    (agg, year, r.adcode, r.name_zh, f"no {'/'.join(needed)}")
                    for r in left.itertuples()
                ]
            data = data[ok]
            if len(data) < 3:
                warnings.warn(
                    f"core-periphery {agg} {year} skipped: {len(data)} cities with "
                    f"{'/'.join(needed)}, at least 3 needed",
                    AggloDataWarning,
                    stacklevel=2,
                )
                excluded.append((agg, year, None, None, f"{len(data)} cities, at least 3 needed"))
                continue
            t = gravity_interactions(data, mass=mass, beta=float(opts.beta), seats=seat_points)
            networks.append((agg, year, data, t))
    fits = _coreness_jobs(
        [(t, method) for *_, t in networks for method in opts.method_list],
        seed=seed,
        n_perm=opts.n_perm,
        restarts=opts.restarts,
        exhaustive_max=opts.exhaustive_max,
        transform=opts.transform,
        progress=progress,
    )
    for agg, year, data, _t in networks:
        names = data.set_index("adcode")["name_zh"]
        discrete = None
        for method in opts.method_list:
            res = fits.pop(0)
            if method == "discrete":
                discrete = res
            fit_rows.append(
                {
                    "agglomeration_id": agg,
                    "year": year,
                    "method": method,
                    "n_cities": len(res),
                    "n_core": int(res["core"].sum()),
                    "core_cities": "、".join(names[res.index[res["core"]]]),
                    **{
                        k: res.attrs[k]
                        for k in ("fit", "p_value", "n_perm", "null_mean", "null_q95")
                    },
                }
            )
            frame = res.reset_index()
            long_rows.append(
                frame.assign(
                    agglomeration_id=agg,
                    year=year,
                    method=method,
                    name_zh=frame["adcode"].map(names).to_numpy(),
                )
            )
        system = city_system(data, size, name_col="name_zh").assign(agglomeration_id=agg, year=year)
        systems.append(system)
        cores = None if discrete is None else discrete.reset_index()
        structures.append(
            structure_type(system, cores, **opts.structure_rules()).assign(
                agglomeration_id=agg, year=year
            )
        )
    if not long_rows:
        raise AggloInputError(
            "[coreperiphery] no agglomeration and year had 3 or more cities with "
            f"{'/'.join(needed)}."
        )
    long = pd.concat(long_rows, ignore_index=True)[
        ["agglomeration_id", "year", "adcode", "name_zh", "method", "coreness", "core"]
    ]
    system_df = pd.concat(systems).reset_index(drop=True)
    system_df = system_df[["agglomeration_id", "year", *system_df.columns[:-2]]]
    struct_df = pd.concat(structures).reset_index(drop=True)
    struct_df = struct_df[["agglomeration_id", "year", "structure_type", "n_core", "rule"]]
    tables = {
        "coreness": long,
        "fit": pd.DataFrame(fit_rows),
        "city_system": system_df,
        "structure": struct_df,
        "gaps": _stage_gaps(panel, long, members, opts),
        "layer": _stage_layer(members, long, struct_df),
        "excluded": pd.DataFrame(excluded, columns=list(EXCLUDED_COLUMNS)),
    }
    return CorePeripheryResult(
        **_stage_provenance(tables, panel, members, opts),
        seats=seat_points,
        options=opts,
        seed=int(seed),
    )


def _stage_gaps(
    panel: pd.DataFrame, long: pd.DataFrame, members: pd.DataFrame, opts: CorePeripheryOptions
) -> pd.DataFrame:
    """Gaps with the discrete core sets (else the continuous ones) of ``opts.gap_cores``."""
    method = "discrete" if "discrete" in set(long["method"]) else "continuous"
    sets = long[long["method"] == method][["agglomeration_id", "year", "adcode", "core"]]
    if opts.gap_cores != "each":
        pick = "min" if opts.gap_cores == "first" else "max"
        ref = sets.groupby("agglomeration_id")["year"].transform(pick)
        sets = sets[sets["year"] == ref].drop(columns="year")
    data = panel[panel["adcode"].isin(members["adcode"])]
    gaps = core_periphery_gaps(data, sets, tol=float(opts.gap_tol))
    return gaps.assign(core_method=method, core_set=opts.gap_cores)


def _stage_layer(
    members: gpd.GeoDataFrame, long: pd.DataFrame, struct: pd.DataFrame
) -> gpd.GeoDataFrame:
    out = members.copy()
    for method, col in (("continuous", "coreness"), ("discrete", "core")):
        sub = long[long["method"] == method]
        for year, g in sub.groupby("year", sort=True):
            out[f"{col}_{year}"] = out["adcode"].map(g.set_index("adcode")[col])
    latest = struct[struct["year"] == struct["year"].max()].set_index("agglomeration_id")
    out["structure_type"] = out["agglomeration_id"].map(latest["structure_type"])
    return out.reset_index(drop=True)


def _stage_provenance(
    tables: dict[str, pd.DataFrame],
    panel: pd.DataFrame,
    members: pd.DataFrame,
    opts: CorePeripheryOptions,
) -> dict[str, pd.DataFrame]:
    """Every table and the layer with ``provenance`` and ``provenance_inputs`` per row.

    A row's labels are those of the panel values it was computed from: coreness, fit and the
    core set of an agglomeration-year the gravity masses of the cities kept that year; the city
    system its sizes; the structure type both; a core/periphery gap the indicator's values of
    the member cities that year and the masses of the year its core set comes from; a layer
    city the masses and sizes of its agglomeration over every year; a left-out city the mass and
    size values it has that year (``unknown`` when it has none), a skipped agglomeration-year
    those of its cities that year. No ``provenance`` column in the panel: the tables are
    returned as they are.
    """
    if "provenance" not in panel.columns:
        return tables
    from agglo.io.indicators import with_provenance

    keys = ["agglomeration_id", "year"]
    group_of = members.set_index("adcode")["agglomeration_id"]
    p = panel[panel["adcode"].isin(group_of.index) & panel["value"].notna()]
    p = p.assign(agglomeration_id=p["adcode"].map(group_of).to_numpy())
    p = p.rename(columns={"indicator": "input"})[[*keys, "adcode", "input", "provenance"]]
    kept = tables["coreness"][[*keys, "adcode"]].drop_duplicates()
    used = p.merge(kept, on=[*keys, "adcode"], how="inner")  # the cities of each network
    mass = used[used["input"].isin(opts.mass_list)]
    size = used[used["input"] == opts.size]
    shape = pd.concat([size, mass] if "discrete" in opts.method_list else [size])
    gaps = tables["gaps"]
    gap_keys = ["agglomeration_id", "indicator", "year"]
    cells = gaps[gap_keys].drop_duplicates()
    if opts.gap_cores == "each":
        core_mass = cells.merge(mass, on=keys)
    else:  # one core set per agglomeration, from its first (last) year
        pick = "min" if opts.gap_cores == "first" else "max"
        ref = mass.groupby("agglomeration_id")["year"].transform(pick)
        ref_mass = mass[mass["year"] == ref].drop(columns="year")
        core_mass = cells.merge(ref_mass, on="agglomeration_id")
    own = p.assign(indicator=p["input"])
    own = own[own["indicator"].isin(set(gaps["indicator"]))]
    gap_labels = pd.concat([own, core_mass], ignore_index=True)
    layer = pd.concat([mass, size], ignore_index=True)
    return {
        "excluded": _excluded_provenance(tables["excluded"], p, opts),
        "coreness": with_provenance(tables["coreness"], mass, keys),
        "fit": with_provenance(tables["fit"], mass, keys),
        "city_system": with_provenance(tables["city_system"], size, keys),
        "structure": with_provenance(tables["structure"], shape, keys),
        "gaps": with_provenance(gaps, gap_labels, gap_keys),
        "layer": with_provenance(tables["layer"], layer, ["agglomeration_id"]),
    }


def _excluded_provenance(
    excluded: pd.DataFrame, labels: pd.DataFrame, opts: CorePeripheryOptions
) -> pd.DataFrame:
    """:attr:`CorePeripheryResult.excluded` with the provenance of the values it looked at.

    ``labels``: the panel's labelled values of the member cities (``agglomeration_id, year,
    adcode, input, provenance``).
    """
    from agglo.io.indicators import with_provenance

    keys = ["agglomeration_id", "year"]
    if not len(excluded):  # not written
        return excluded
    used = labels[labels["input"].isin({*opts.mass_list, opts.size})]
    city = excluded["adcode"].notna()
    parts = []
    if city.any():
        parts.append(with_provenance(excluded[city], used, [*keys, "adcode"]))
    if (~city).any():
        parts.append(with_provenance(excluded[~city], used, keys))
    return pd.concat(parts).loc[excluded.index]
