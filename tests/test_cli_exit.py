"""The console script's quick exit: exit codes, flushed output and exit handlers kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from agglo import cli


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("args", "code"), [(["--version"], 0), (["index", "--nope"], 2)])
def test_python_m_agglo_exit_codes(args, code):
    done = subprocess.run(
        [sys.executable, "-m", "agglo", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == code, done.stderr
    if code == 0:
        assert done.stdout.startswith("agglo ")


def test_quick_exit_runs_exit_handlers_and_flushes_buffered_output(tmp_path):
    marker = tmp_path / "handler-ran"
    done = _python(
        f"""
        import atexit, logging, sys
        from agglo.cli import quick_exit
        atexit.register(lambda: open({str(marker)!r}, "w").write("yes"))
        logging.basicConfig(stream=sys.stderr)
        sys.stdout.write("buffered, no newline")
        logging.getLogger("x").warning("logged")
        quick_exit(3)
        """
    )
    assert done.returncode == 3
    assert done.stdout == "buffered, no newline"
    assert "logged" in done.stderr
    assert marker.read_text() == "yes"


def test_quick_exit_waits_for_a_running_non_daemon_thread(tmp_path):
    done = _python(
        """
        import threading, time, sys
        from agglo.cli import quick_exit
        def late():
            time.sleep(0.3)
            print("thread finished", flush=True)
        threading.Thread(target=late).start()
        quick_exit(0)
        """
    )
    assert done.returncode == 0
    assert "thread finished" in done.stdout  # os._exit would have killed it


def test_freeze_imported_only_in_the_console_process(monkeypatch):
    frozen = []
    monkeypatch.setattr(cli.gc, "freeze", lambda: frozen.append(True))
    cli.freeze_imported()
    assert frozen == []  # main() called from Python: the caller's objects stay collectable
    monkeypatch.setattr(cli, "_in_console", True)
    cli.freeze_imported()
    assert frozen == [True]
