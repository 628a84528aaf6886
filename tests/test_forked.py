"""Stages in forked children: results, warnings, log records and errors reach the parent."""

from __future__ import annotations

import logging
import os
import warnings

import pytest

from agglo._forked import ForkedCall, ForkedError, fork_available, wait_any
from agglo.errors import AggloDataWarning, AggloInputError

pytestmark = pytest.mark.skipif(not fork_available(), reason="forked stages need Linux fork")

log = logging.getLogger("agglo.tests.forked")


def _double_noisily(x: int) -> int:
    log.info("doubling %d in pid %d", x, os.getpid())
    warnings.warn(f"city {x} repaired", AggloDataWarning, stacklevel=1)
    return 2 * x


def _fail() -> None:
    raise AggloInputError("adcode 999999 is unknown")


def _die() -> None:
    os._exit(3)


def _unpicklable():
    return lambda: None


def test_result_warning_and_log_record_reach_the_parent(caplog):
    caplog.set_level(logging.INFO, logger="agglo.tests.forked")
    # the filters in force when the child starts are the child's (pytest.warns: "always")
    with pytest.warns(AggloDataWarning, match="city 21 repaired") as caught:
        assert ForkedCall.start(_double_noisily, 21, name="demo").result() == 42
    assert len(caught) == 1 and caught[0].filename == __file__
    records = [r for r in caplog.records if r.name == "agglo.tests.forked"]
    assert len(records) == 1  # once: not also printed by the child's copy of the handlers
    assert records[0].getMessage().startswith("doubling 21 in pid ")
    assert records[0].getMessage() != f"doubling 21 in pid {os.getpid()}"  # it ran elsewhere


def test_error_filter_of_the_parent_applies_in_the_child():
    with warnings.catch_warnings():
        warnings.simplefilter("error", AggloDataWarning)
        with pytest.raises(AggloDataWarning, match="city 1 repaired"):
            ForkedCall.start(_double_noisily, 1).result()


def test_exception_is_raised_again_with_its_type_and_the_child_traceback():
    with pytest.raises(AggloInputError, match="999999") as info:
        ForkedCall.start(_fail, name="index").result()
    cause = info.value.__cause__
    assert isinstance(cause, ForkedError) and "_fail" in str(cause) and "index" in str(cause)


def test_a_child_that_dies_is_an_error_not_a_hang():
    with pytest.raises(ForkedError, match=r"died without a result.*exit code 3"):
        ForkedCall.start(_die, name="metro").result()


def test_an_unpicklable_result_is_an_error():
    with pytest.raises(ForkedError, match="could not be sent back"):
        ForkedCall.start(_unpicklable).result()


def test_wait_any_returns_the_first_finished():
    slow = ForkedCall.start(__import__("time").sleep, 5.0)
    try:
        with pytest.warns(AggloDataWarning):
            fast = ForkedCall.start(_double_noisily, 2)
            assert wait_any([slow, fast]) is fast and fast.result() == 4
    finally:
        slow.kill()
    assert not slow.process.is_alive()


def test_ctrl_c_is_the_parents_a_child_ignores_it():
    import signal
    import time

    call = ForkedCall.start(time.sleep, 1.0)
    time.sleep(0.3)
    os.kill(call.process.pid, signal.SIGINT)
    assert call.result() is None  # the child slept on; the parent decides what to stop


def _thread_named(name: str):
    import threading

    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name=name, daemon=True)
    t.start()
    return t, stop


@pytest.mark.parametrize(
    ("name", "blocks"),
    [
        ("reader-0", True),
        ("ThreadPoolExecutor-3_0", True),
        ("Dask-Offload_0", False),
        ("agglo-valid-2", False),
        ("agglo-eigh_0", False),
        ("tqdm_monitor", False),
    ],
)
def test_fork_obstacle_names_a_running_thread_unless_it_is_fork_safe(name, blocks):
    from agglo._forked import fork_obstacle

    assert fork_obstacle() is None  # nothing else runs in the test process at first
    t, stop = _thread_named(name)
    try:
        why = fork_obstacle()
        assert (why is not None and name in why) if blocks else why is None
    finally:
        stop.set()
        t.join()
    assert fork_obstacle() is None


def test_fork_obstacle_in_a_daemonic_process_and_beside_children(monkeypatch):
    import multiprocessing

    from agglo._forked import fork_obstacle

    call = ForkedCall.start(os.getpid, name="pid")
    try:
        assert fork_obstacle() is None  # children do not stop a split by default
        if multiprocessing.active_children():
            assert "children" in fork_obstacle(children=False)
    finally:
        call.result()
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True, raising=False)
    assert "daemonic" in fork_obstacle()
