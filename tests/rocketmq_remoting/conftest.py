"""Fixtures for the RocketMQ remoting-protocol client tests.

Every test talks to a real `fjord serve` process over TCP with the
unmodified RocketMQ C++ client (PyPI `rocketmq-client-python` 0.5.0rc2,
whose wheel bundles rocketmq-client-cpp). Consumers that must survive a
crash run in child processes (consumer_proc.py).

The C++ client keeps broadcasting offsets under $HOME/.rocketmq_offsets and
logs under $HOME/logs; scripts/test-rocketmq-clients points HOME at a fresh
directory so runs never see each other's state.
"""

import re
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

import fjord_harness  # noqa: E402
from fjord_harness import FjordServer  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in fjord_harness.LIVE:
            if server.proc is not None:
                report.sections.append((f"fjord log ({server.log_path})", server.log_tail(60)))


@pytest.fixture(scope="session")
def fjord():
    with tempfile.TemporaryDirectory(prefix="fjord-rmq-") as d:
        server = FjordServer(Path(d) / "data").start()
        yield server
        alive = server.running
        rc = server.stop()
        assert alive, f"fjord died during the tests:\n{server.log_tail()}"
        assert rc == 0, f"fjord exited with {rc} on SIGTERM:\n{server.log_tail()}"


@pytest.fixture(scope="session")
def namesrv(fjord) -> str:
    return fjord.namesrv


@pytest.fixture
def unique(request):
    """unique("topic") -> a name no other test uses (RocketMQ allows
    letters, digits, `-`, `_` and `%`, at most 127 characters)."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]

    def make(kind: str = "t") -> str:
        return f"{base}-{kind}-{uuid.uuid4().hex[:8]}"

    return make
