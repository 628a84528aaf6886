"""Download real inputs (OSM extracts) with caching, checksums and atomic writes.

The bundle has no real road network; ``agglo data fetch osm`` downloads one from Geofabrik:
``https://download.geofabrik.de/<region>-latest.osm.pbf``, e.g. ``asia/china`` (about 1.4 GB
for China) -- Geofabrik publishes an ``.md5`` file beside each extract, which
``checksum_from_server=True`` verifies. Files are cached (default ``$AGGLO_CACHE_DIR`` or
``~/.cache/agglo``): a cached file whose checksum matches is not downloaded again.

Nothing here runs at import or test time against the internet; tests use a local HTTP server.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
import urllib.request
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


def _open(url: str, timeout: float):
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"download of {url} failed: HTTP {exc.code} {exc.reason}.") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"download of {url} failed: {reason}. Check the network (or a proxy), or download "
            "the file yourself and pass it with --roads."
        ) from exc


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
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest`` (cached, streamed, checksummed, atomic).

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
        Show a progress bar (tqdm) while downloading.
    timeout
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        The file. A ``<file>.sha256`` sidecar records its digest, so a later call detects a
        corrupted or truncated cached copy and downloads again.

    Examples
    --------
    >>> path = fetch(geofabrik_url("china"), checksum_from_server=True)  # doctest: +SKIP
    """
    if not re.match(r"^https?://", url):
        raise AggloInputError(f"url must start with http:// or https://, got {url!r}.")
    sha256 = _check_hex(sha256, "sha256", 64)
    md5 = _check_hex(md5, "md5", 32)
    name = url.rstrip("/").rsplit("/", 1)[-1] or "download"
    dest = Path(dest) if dest is not None else Path(cache_dir or default_cache_dir()) / name
    if checksum_from_server and md5 is None:
        with _open(url + ".md5", timeout) as resp:
            text = resp.read(4096).decode("ascii", "replace").split()
        md5 = _check_hex(text[0] if text else "", "md5 from server", 32)
    sidecar = dest.with_name(dest.name + ".sha256")
    if dest.is_file() and not force:
        have = file_digest(dest)
        recorded = sidecar.read_text().strip() if sidecar.is_file() else None
        ok = (sha256 is None or have == sha256) and (recorded is None or have == recorded)
        if ok and md5 is not None:
            ok = file_digest(dest, "md5") == md5
        if ok:
            log.info("using cached %s (sha256 %s)", dest, have[:12])
            return dest
        log.info("cached %s does not match its checksum; downloading again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    h256, hmd5 = hashlib.sha256(), hashlib.md5()
    received = 0
    try:
        with _open(url, timeout) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=name)
            try:
                while block := resp.read(chunk_size):
                    out.write(block)
                    h256.update(block)
                    hmd5.update(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
        if total is not None and received != total:
            raise FetchError(
                f"download of {url} was cut short: {received} of {total} bytes; try again."
            )
        got = h256.hexdigest()
        if sha256 is not None and got != sha256:
            raise FetchError(f"sha256 mismatch for {url}: expected {sha256}, got {got}.")
        if md5 is not None and hmd5.hexdigest() != md5:
            raise FetchError(f"md5 mismatch for {url}: expected {md5}, got {hmd5.hexdigest()}.")
        os.replace(tmp, dest)
        sidecar.write_text(got + "\n")
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("downloaded %s (%.1f MB, sha256 %s)", dest, received / 1e6, got[:12])
    return dest
