"""Fixtures for the Kafka client compatibility tests.

Every test talks to a real `fjord serve` process over TCP with an unmodified
client from PyPI (kafka-python, confluent-kafka/librdkafka). The process
handling is in tests/common/fjord_harness.py.
"""

import sys
import tempfile
from pathlib import Path

import pytest

# The broker harness and fixtures are shared with the other client suites.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

from fjord_fixtures import *  # noqa: E402,F401,F403
from fjord_fixtures import run_broker, stop_checked  # noqa: E402
from fjord_harness import FjordServer  # noqa: E402


@pytest.fixture(scope="session")
def fjord():
    """The shared broker of the session (use unique topic and group names)."""
    yield from run_broker("fjord-kafka-")


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
            stop_checked(s)
    finally:
        for d in dirs:
            d.cleanup()
