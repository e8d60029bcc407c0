"""Pytest pieces every client test suite shares; a suite's conftest.py
imports them (`from fjord_fixtures import *`) after putting tests/common on
sys.path.

- On a failure, the tail of each running broker's log is attached to the
  report.
- `unique("topic")` gives names no other test uses.
- `stop_checked(server)` stops a broker and asserts it was alive and exited 0.
- `run_broker(prefix)` is the body of a session `fjord` fixture: a broker in
  a temporary data directory, stopped with those checks.
"""

import re
import tempfile
import uuid
from pathlib import Path

import pytest

import fjord_harness
from fjord_harness import FjordServer

__all__ = ["pytest_runtest_makereport", "unique", "stop_checked", "run_broker"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in fjord_harness.LIVE:
            if server.proc is not None:
                report.sections.append((f"fjord log ({server.log_path})", server.log_tail(60)))


@pytest.fixture
def unique(request):
    """unique("topic") -> a name no other test uses (letters, digits, `-`
    and `_` only, so it is valid for Kafka and RocketMQ alike)."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]

    def make(kind: str = "t") -> str:
        return f"{base}-{kind}-{uuid.uuid4().hex[:8]}"

    return make


def stop_checked(server: FjordServer):
    """SIGTERM; the broker must have been alive and must exit 0."""
    if server.proc is None:
        return
    alive = server.running
    rc = server.stop()
    assert alive, f"fjord died during the tests (exit {rc}):\n{server.log_tail()}"
    assert rc == 0, f"fjord exited with {rc} on SIGTERM:\n{server.log_tail()}"


def run_broker(prefix: str, env: dict | None = None):
    """`yield from run_broker("fjord-x-")` in a fixture: yields a started
    broker, then stops it with `stop_checked`."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        server = FjordServer(Path(d) / "data", env=env).start()
        yield server
        stop_checked(server)
