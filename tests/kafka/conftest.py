"""Fixtures for the Kafka client compatibility tests.

Every test talks to a real `fjord serve` process over TCP with an unmodified
client from PyPI (kafka-python, confluent-kafka/librdkafka). The process
handling is in tests/common/fjord_harness.py.
"""

import re
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

# The broker harness is shared with the RocketMQ client tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

import fjord_harness
from fjord_harness import FjordServer


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tail of each running broker's log."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in fjord_harness.LIVE:
            if server.proc is not None:
                report.sections.append((f"fjord log ({server.log_path})", server.log_tail(40)))


def _stop_checked(server: FjordServer):
    if server.proc is None:
        return
    alive = server.running
    rc = server.stop()
    assert alive, f"fjord died during the tests (exit {rc}):\n{server.log_tail()}"
    assert rc == 0, f"fjord exited with {rc} on SIGTERM:\n{server.log_tail()}"


@pytest.fixture(scope="session")
def fjord():
    """The shared broker of the session (use unique topic and group names)."""
    with tempfile.TemporaryDirectory(prefix="fjord-kafka-") as d:
        server = FjordServer(Path(d) / "data").start()
        yield server
        _stop_checked(server)


@pytest.fixture(scope="session")
def bootstrap(fjord) -> str:
    return fjord.bootstrap


@pytest.fixture
def fjord_factory():
    """Starts dedicated brokers (own data dir) for tests that stop,
    restart or pin the port of a broker; each is stopped at teardown with
    an exit-code check."""
    servers = []
    dirs = []

    def make(kafka_port: int | None = None, env: dict | None = None) -> FjordServer:
        d = tempfile.TemporaryDirectory(prefix="fjord-kafka-")
        dirs.append(d)
        s = FjordServer(Path(d.name) / "data", kafka_port=kafka_port, env=env)
        servers.append(s)
        return s.start()

    yield make
    try:
        for s in servers:
            _stop_checked(s)
    finally:
        for d in dirs:
            d.cleanup()


@pytest.fixture
def unique(request):
    """unique("topic") -> a name no other test uses."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60]

    def make(kind: str = "t") -> str:
        return f"{base}-{kind}-{uuid.uuid4().hex[:8]}"

    return make
