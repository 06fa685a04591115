"""Timeouts that hold under uvloop, and hang evidence, for a suite that runs under pytest-xdist.

pytest-timeout's signal method never fires while uvloop waits (its SIGALRM handler runs only when
the loop runs Python code: a test awaiting a reply that never came ran until CI's own limit), and
its thread method ends the worker, which pytest-xdist 3.8 cannot replace under ``--dist loadfile``
(the run ends with an INTERNALERROR). A worker's stderr, where either prints stacks, is not shown.
So ``watch`` runs beside each test:

- shortly before the test's timeout it writes every thread's and every pending asyncio task's stack
  to ``$AIAAS_STATE_DIR/hangs/<test>.txt`` (``.ci/run`` prints them when the run fails);
- at the timeout it cancels every task of the event loops the tests run on (``watched_loop``), and
  again every ``RECANCEL_S`` while the test (its teardown included) has not ended: the test fails
  with the reason, its worker goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

WARN_BEFORE_S = 15  # dump the stacks this long before the test's timeout
RECANCEL_S = 30  # a teardown that waits on the same stuck thing is cancelled again
LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def watched_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop whose tasks ``watch`` can cancel."""
    loop = uvloop.new_event_loop()
    LOOPS.add(loop)
    return loop


def hangs_dir() -> Path:
    """Read as each test starts: a test may point AIAAS_STATE_DIR at its own infrastructure."""
    return Path(os.environ.get("AIAAS_STATE_DIR", ".run")) / "hangs"


def timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


def _dump(nodeid: str, limit_s: float, where: Path) -> None:
    path = where / (re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[-150:] + ".txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write(f"{nodeid}: still running {limit_s - WARN_BEFORE_S:.0f} s after it started "
                f"(timeout {limit_s:.0f} s, pid {os.getpid()}, {time.strftime('%H:%M:%S')})\n\n")
        f.flush()
        faulthandler.dump_traceback(file=f, all_threads=True)
        f.write("\npending asyncio tasks:\n")
        for obj in gc.get_objects():  # another thread's loop: no API lists its tasks safely
            if isinstance(obj, asyncio.Task) and not obj.done():
                with contextlib.suppress(Exception):
                    obj.print_stack(limit=12, file=f)


def _cancel_all(reason: str) -> None:
    for loop in list(LOOPS):
        if loop.is_closed() or not loop.is_running():
            continue

        def cancel(loop: asyncio.AbstractEventLoop = loop) -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel(reason)

        with contextlib.suppress(RuntimeError):  # closed in between
            loop.call_soon_threadsafe(cancel)


def _watch(item: pytest.Item, limit: float, done: threading.Event, where: Path) -> None:
    if done.wait(limit - WARN_BEFORE_S):
        return
    _dump(item.nodeid, limit, where)
    if done.wait(WARN_BEFORE_S + 2):  # pytest-timeout first, where it can (sync code)
        return
    reason = f"tests/watchdog.py: {item.nodeid} ran past its timeout of {limit:.0f} s"
    while True:
        _cancel_all(reason)
        if done.wait(RECANCEL_S):
            return


@contextlib.contextmanager
def watch(item: pytest.Item) -> Iterator[None]:
    """Run the test with a watchdog thread that ends when the test (teardown included) has."""
    limit = timeout_of(item)
    if limit <= WARN_BEFORE_S:
        yield
        return
    done = threading.Event()
    threading.Thread(target=_watch, args=(item, limit, done, hangs_dir()), daemon=True,
                     name="test-watchdog").start()
    try:
        yield
    finally:
        done.set()
