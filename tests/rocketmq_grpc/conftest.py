"""Fixtures for the RocketMQ 5.x gRPC client tests.

Every test talks to a real `fjord serve` process over gRPC (plaintext) with
the unmodified PyPI client `rocketmq-python-client` 5.1.2. Consumer-group
settings (retries, ordered consumption) are set as an operator would with
`mqadmin updateSubGroup`: a remoting UPDATE_AND_CREATE_SUBSCRIPTIONGROUP
request to the name server port (remoting.py).
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
def endpoint(fjord) -> str:
    return fjord.grpc


@pytest.fixture
def unique(request):
    """unique("topic") -> a name no other test uses (RocketMQ allows
    letters, digits, `-`, `_` and `%`, at most 127 characters)."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]

    def make(kind: str = "t") -> str:
        return f"{base}-{kind}-{uuid.uuid4().hex[:8]}"

    return make
