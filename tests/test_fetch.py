"""Tests of agglo.io.fetch against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from typing import ClassVar

import pytest

from agglo.cli import main
from agglo.errors import AggloInputError
from agglo.io.fetch import FetchError, fetch, file_digest, geofabrik_url

PAYLOAD = b"fake osm pbf bytes " * 5000  # 95 kB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        Handler.hits.append(self.path)
        if self.path == "/asia/china-latest.osm.pbf":
            body = PAYLOAD
        elif self.path == "/asia/china-latest.osm.pbf.md5":
            body = f"{MD5}  china-latest.osm.pbf\n".encode()
        elif self.path == "/flaky.pbf" and Handler.hits.count("/flaky.pbf") == 1:
            self.send_error(503, "Service Unavailable")  # fails once, then serves
            return
        elif self.path == "/flaky.pbf":
            body = PAYLOAD
        elif self.path == "/short.pbf":  # announces more bytes than it sends
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD) + 10))
            self.end_headers()
            self.wfile.write(PAYLOAD)
            return
        else:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checksum_and_cache(server, tmp_path):
    url = f"{server}/asia/china-latest.osm.pbf"
    p = fetch(url, cache_dir=tmp_path, sha256=SHA)
    assert p == tmp_path / "china-latest.osm.pbf"
    assert p.read_bytes() == PAYLOAD
    assert (tmp_path / "china-latest.osm.pbf.sha256").read_text().strip() == SHA
    assert Handler.hits == ["/asia/china-latest.osm.pbf"]
    # cached: no second request
    assert fetch(url, cache_dir=tmp_path, sha256=SHA) == p
    assert len(Handler.hits) == 1
    # corrupted cache is detected by the sidecar and downloaded again
    p.write_bytes(b"truncated")
    fetch(url, cache_dir=tmp_path)
    assert p.read_bytes() == PAYLOAD and len(Handler.hits) == 2
    # force: downloads again
    fetch(url, cache_dir=tmp_path, force=True)
    assert len(Handler.hits) == 3


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url = f"{server}/asia/china-latest.osm.pbf"
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(url, tmp_path / "x.pbf", sha256="0" * 64, retries=0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FetchError, match="md5 mismatch"):
        fetch(url, tmp_path / "x.pbf", md5="0" * 32, retries=0)
    assert list(tmp_path.iterdir()) == []


def test_server_md5(server, tmp_path):
    p = fetch(f"{server}/asia/china-latest.osm.pbf", tmp_path / "c.pbf", checksum_from_server=True)
    assert file_digest(p, "md5") == MD5
    assert "/asia/china-latest.osm.pbf.md5" in Handler.hits


def test_errors(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(f"{server}/missing.pbf", tmp_path / "m.pbf", retries=0)
    with pytest.raises(FetchError, match="cut short"):
        fetch(f"{server}/short.pbf", tmp_path / "s.pbf", timeout=5, retries=0)
    assert not (tmp_path / "s.pbf").exists()
    with pytest.raises(AggloInputError, match="sha256 must be 64 hex characters"):
        fetch(f"{server}/x", tmp_path / "x", sha256="abc")
    with pytest.raises(AggloInputError, match="must start with http"):
        fetch("ftp://example.org/x", tmp_path / "x")
    with pytest.raises(AggloInputError, match="not a Geofabrik region"):
        geofabrik_url("../etc")


def test_retries_after_a_failed_download(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 503"):
        fetch(f"{server}/flaky.pbf", tmp_path / "a.pbf", retries=0)
    Handler.hits = []
    p = fetch(f"{server}/flaky.pbf", tmp_path / "f.pbf", sha256=SHA, retries=1)
    assert p.read_bytes() == PAYLOAD
    assert Handler.hits == ["/flaky.pbf", "/flaky.pbf"]


def test_geofabrik_url():
    assert geofabrik_url("China") == "https://download.geofabrik.de/asia/china-latest.osm.pbf"


def test_cli_fetch_osm(server, tmp_path, capsys):
    out = tmp_path / "china.osm.pbf"
    code = main(
        [
            "data",
            "fetch",
            "osm",
            "--url",
            f"{server}/asia/china-latest.osm.pbf",
            "--out",
            str(out),
            "--sha256",
            SHA,
        ]
    )
    assert code == 0
    assert out.read_bytes() == PAYLOAD
    code = main(
        [
            "data",
            "fetch",
            "osm",
            "--url",
            f"{server}/asia/china-latest.osm.pbf",
            "--out",
            str(tmp_path / "b.pbf"),
            "--sha256",
            "1" * 64,
            "--retries",
            "0",
        ]
    )
    assert code == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    # default: verify against the server's .md5
    code = main(
        [
            "data",
            "fetch",
            "osm",
            "--url",
            f"{server}/asia/china-latest.osm.pbf",
            "--out",
            str(tmp_path / "c.pbf"),
        ]
    )
    assert code == 0 and (tmp_path / "c.pbf").read_bytes() == PAYLOAD
