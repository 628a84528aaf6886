"""SYNTHETIC PM2.5 fields for the demo rasters and benchmarks (not part of the package)."""

from __future__ import annotations

import numpy as np


def synthetic_pm25_field(
    lat: np.ndarray, lon: np.ndarray, *, year: int, seed: int, base_year: int = 2010
) -> np.ndarray:
    """A plausible synthetic annual PM2.5 field (µg/m³) over China, rows in the order of ``lat``.

    Structure: a smooth background rising from south-west (~20) to the North China Plain
    (~90 in 2010), hotspots over the Sichuan basin, the Wuhan-Changsha corridor and the Yangtze
    delta, seeded smooth noise (the same pattern every year, plus a small yearly part), and a
    decline after 2013 close to the observed one (~ -45 % by 2020). Documented in
    ``data/rasters/README.md``; everything here is made up.

    Parameters
    ----------
    lat, lon
        Cell-centre coordinates (1-D, degrees).
    year
        Year; sets the overall level.
    seed
        Seed of the noise (the yearly part uses ``seed + year``).
    base_year
        Year of the reference level.

    Returns
    -------
    numpy.ndarray
        float32 array (len(lat), len(lon)), values >= 3.

    Examples
    --------
    >>> f = synthetic_pm25_field(np.arange(25, 35, 0.5), np.arange(100, 122, 0.5), year=2010, seed=1)
    >>> f.shape, bool(15 < float(f.mean()) < 90)
    ((20, 44), True)
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    y2, x2 = lat[:, None], lon[None, :]

    def bump(x0: float, y0: float, sx: float, sy: float) -> np.ndarray:
        return np.exp(-(((x2 - x0) / sx) ** 2) - ((y2 - y0) / sy) ** 2)

    base = 18.0 + 2.2 * np.clip(y2 - 18.0, 0, None) + 0.35 * np.clip(x2 - 100.0, 0, 25)
    base = base - 25.0 * bump(90.0, 32.0, 8.0, 4.0)  # cleaner Tibetan plateau
    hot = (
        45.0 * bump(104.8, 30.3, 2.2, 1.6)  # Sichuan basin (Chengdu-Chongqing)
        + 25.0 * bump(113.5, 29.5, 2.0, 1.8)  # Wuhan-Changsha
        + 25.0 * bump(119.5, 31.8, 2.5, 1.5)  # Yangtze delta
        + 45.0 * bump(115.5, 37.5, 4.0, 2.5)  # North China Plain
        + 20.0 * bump(87.5, 40.0, 4.0, 1.5)  # Tarim basin dust
    )
    rng = np.random.default_rng(seed)
    noise = _smooth_noise(rng, lat, lon, scale_deg=1.5) * 6.0
    noise_y = _smooth_noise(np.random.default_rng(seed + int(year)), lat, lon, scale_deg=3.0) * 3.0
    trend = 1.0 if year <= 2013 else max(0.5, 1.0 - 0.065 * (year - 2013))
    level = 1.0 + 0.01 * (min(year, 2013) - base_year)
    field = (base + hot + noise) * level * trend + noise_y
    return np.clip(field, 3.0, None).astype(np.float32)


def _smooth_noise(
    rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, scale_deg: float
) -> np.ndarray:
    """Unit-variance noise smooth at ``scale_deg``: a coarse random grid interpolated bilinearly."""
    y0, y1 = float(lat.min()), float(lat.max())
    x0, x1 = float(lon.min()), float(lon.max())
    ny = max(2, int((y1 - y0) / scale_deg) + 2)
    nx = max(2, int((x1 - x0) / scale_deg) + 2)
    coarse = rng.standard_normal((ny, nx))
    fy = (lat - y0) / scale_deg
    fx = (lon - x0) / scale_deg
    iy = np.clip(np.floor(fy).astype(int), 0, ny - 2)
    ix = np.clip(np.floor(fx).astype(int), 0, nx - 2)
    ty = (fy - iy)[:, None]
    tx = (fx - ix)[None, :]
    a = coarse[iy][:, ix]
    b = coarse[iy][:, ix + 1]
    c = coarse[iy + 1][:, ix]
    d = coarse[iy + 1][:, ix + 1]
    return (a * (1 - ty) * (1 - tx) + b * (1 - ty) * tx + c * ty * (1 - tx) + d * ty * tx).astype(
        np.float64
    )
