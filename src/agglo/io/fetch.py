"""Download real inputs (OSM extracts) with pooch: caching, checksums, retries, atomic writes.

The bundle has no real road network; ``agglo data fetch osm`` downloads one from Geofabrik:
``https://download.geofabrik.de/<region>-latest.osm.pbf``, e.g. ``asia/china`` (about 1.4 GB
for China) -- Geofabrik publishes an ``.md5`` file beside each extract, which
``checksum_from_server=True`` verifies. Files are cached (default ``$AGGLO_CACHE_DIR`` or
``~/.cache/agglo``): a cached file whose checksum matches is not downloaded again.

Nothing here runs at import or test time against the internet; tests use a local HTTP server.
The downloads go through :mod:`pooch` (``HTTPDownloader`` on requests), not hand-written
HTTP code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from agglo.errors import AggloInputError

__all__ = [
    "GEOFABRIK_REGIONS",
    "GEOFABRIK_URL",
    "FetchError",
    "default_cache_dir",
    "fetch",
    "file_digest",
    "geofabrik_url",
]

log = logging.getLogger(__name__)

#: Geofabrik download URL pattern; ``region`` is a path such as ``asia/china``
GEOFABRIK_URL = "https://download.geofabrik.de/{region}-latest.osm.pbf"
#: short names -> Geofabrik region paths (any ``continent/country`` path is accepted too)
GEOFABRIK_REGIONS: dict[str, str] = {
    "china": "asia/china",
    "asia": "asia",
    "taiwan": "asia/taiwan",
}
_HEX = re.compile(r"^[0-9a-fA-F]+$")


class FetchError(AggloInputError):
    """A download failed or its checksum did not match."""


def default_cache_dir() -> Path:
    """``$AGGLO_CACHE_DIR`` or ``~/.cache/agglo``."""
    env = os.environ.get("AGGLO_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "agglo"


def geofabrik_url(region: str) -> str:
    """Geofabrik ``.osm.pbf`` URL of a region name or path.

    Examples
    --------
    >>> geofabrik_url("china")
    'https://download.geofabrik.de/asia/china-latest.osm.pbf'
    >>> geofabrik_url("asia/japan")
    'https://download.geofabrik.de/asia/japan-latest.osm.pbf'
    """
    r = region.strip().strip("/").lower()
    path = GEOFABRIK_REGIONS.get(r, r)
    if not re.fullmatch(r"[a-z0-9-]+(/[a-z0-9-]+)*", path):
        raise AggloInputError(
            f"region {region!r} is not a Geofabrik region: give one of "
            f"{sorted(GEOFABRIK_REGIONS)} or a path like 'asia/china' (see download.geofabrik.de)."
        )
    return GEOFABRIK_URL.format(region=path)


def file_digest(path: str | Path, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> file_digest(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def _check_hex(value: str | None, name: str, length: int) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if len(v) != length or not _HEX.match(v):
        raise AggloInputError(f"{name} must be {length} hex characters, got {value!r}.")
    return v


def _downloader(progress: bool, timeout: float):
    import pooch

    return pooch.HTTPDownloader(progressbar=progress, timeout=timeout)


def _failure(url: str, exc: Exception) -> FetchError:
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        r = exc.response
        return FetchError(f"download of {url} failed: HTTP {r.status_code} {r.reason}.")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return FetchError(f"download of {url} was cut short ({exc}); try again.")
    return FetchError(
        f"download of {url} failed: {exc}. Check the network (or a proxy), or download "
        "the file yourself and pass it with --roads."
    )


def _server_md5(url: str, timeout: float) -> str | None:
    import io

    import requests

    buf = io.BytesIO()
    try:
        _downloader(False, timeout)(url, buf, None)
    except requests.RequestException as exc:
        raise _failure(url, exc) from exc
    text = buf.getvalue()[:4096].decode("ascii", "replace").split()
    return _check_hex(text[0] if text else "", "md5 from server", 32)


def fetch(
    url: str,
    dest: str | Path | None = None,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    checksum_from_server: bool = False,
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = False,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """Download ``url`` to ``dest`` with :mod:`pooch` (cached, checksummed, retried, atomic).

    pooch streams into a temporary file beside ``dest``, checks the hash and only then moves
    it into place, so a failed or mismatching download leaves nothing behind; it retries failed
    downloads with a growing pause. pooch does not resume a partial download: a retry starts
    the file again.

    Parameters
    ----------
    url
        ``http://`` or ``https://`` URL.
    dest
        Output file; default ``cache_dir / <last part of the URL>``.
    sha256, md5
        Expected hex digest(s); a mismatch raises :class:`FetchError` and leaves no file.
    checksum_from_server
        Also fetch ``<url>.md5`` (Geofabrik publishes one per extract) and verify against it.
    cache_dir
        Cache folder (default :func:`default_cache_dir`).
    force
        Download even if a valid cached copy exists.
    progress
        Show a progress bar (tqdm, through pooch) while downloading.
    timeout
        Socket timeout in seconds.
    retries
        How many times pooch tries again after a failed download (0: fail at once).

    Returns
    -------
    pathlib.Path
        The file. A ``<file>.sha256`` sidecar records its digest, so a later call detects a
        corrupted or truncated cached copy and downloads again.

    Examples
    --------
    >>> path = fetch(geofabrik_url("china"), checksum_from_server=True)  # doctest: +SKIP
    """
    import pooch
    import requests

    if not re.match(r"^https?://", url):
        raise AggloInputError(f"url must start with http:// or https://, got {url!r}.")
    sha256 = _check_hex(sha256, "sha256", 64)
    md5 = _check_hex(md5, "md5", 32)
    if retries < 0:
        raise AggloInputError(f"retries must be 0 or more, got {retries}.")
    name = url.rstrip("/").rsplit("/", 1)[-1] or "download"
    dest = Path(dest) if dest is not None else Path(cache_dir or default_cache_dir()) / name
    if checksum_from_server and md5 is None:
        md5 = _server_md5(url + ".md5", timeout)
    sidecar = dest.with_name(dest.name + ".sha256")
    recorded = sidecar.read_text().strip() if sidecar.is_file() else None
    if force and dest.is_file():
        dest.unlink()
    # pooch checks one hash: the caller's sha256, else the caller's md5, else the digest recorded
    # at the last download (catches a corrupted cache); the other given hash is checked after
    known = f"sha256:{sha256}" if sha256 else f"md5:{md5}" if md5 else recorded
    if known is not None and recorded is not None and sha256 and recorded != sha256:
        known = f"sha256:{sha256}"
    store = pooch.create(
        path=dest.parent,
        base_url="",
        registry={dest.name: known},
        urls={dest.name: url},
        retry_if_failed=retries,
    )
    cached = dest.is_file()
    try:
        store.fetch(dest.name, downloader=_downloader(progress, timeout))
    except ValueError as exc:  # pooch: hash of the downloaded file does not match
        algorithm = "sha256" if sha256 or not md5 else "md5"
        raise FetchError(f"{algorithm} mismatch for {url}: {exc}") from exc
    except requests.RequestException as exc:
        raise _failure(url, exc) from exc
    if sha256 and md5 and file_digest(dest, "md5") != md5:
        got = file_digest(dest, "md5")
        dest.unlink()
        raise FetchError(f"md5 mismatch for {url}: expected {md5}, got {got}.")
    got = file_digest(dest)
    sidecar.write_text(got + "\n")
    verb = "using cached" if cached and recorded == got else "downloaded"
    log.info("%s %s (%.1f MB, sha256 %s)", verb, dest, dest.stat().st_size / 1e6, got[:12])
    return dest
