"""Fixtures for the AMQP 0-9-1 client tests.

Every test talks to a real `fjord serve` process over TCP with unmodified
pika (PyPI). The session broker listens for AMQP on an ephemeral port;
the seed test starts its own broker on 5672, because the article's
programs connect to `localhost` with pika's defaults and are run exactly
as written.
"""

import os
import sys
from pathlib import Path

import pika
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

from fjord_fixtures import *  # noqa: E402,F401,F403
from fjord_fixtures import run_broker  # noqa: E402


# With FJORD_PEER_AMQP=host:port (`scripts/peers test-amqp`), the tests that
# only speak AMQP run against that broker (a real RabbitMQ) instead; those
# that need Fjord itself (its admin API, Kafka, restarts) are skipped.
PEER = os.environ.get("FJORD_PEER_AMQP")


def pytest_collection_modifyitems(config, items):
    if PEER:
        skip = pytest.mark.skip(reason="needs Fjord itself (FJORD_PEER_AMQP is set)")
        for item in items:
            if "fjord_only" in item.keywords or "fjord" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "fjord_only: needs a Fjord broker, not any AMQP broker")


@pytest.fixture(scope="session")
def fjord():
    yield from run_broker("fjord-amqp-")


@pytest.fixture(scope="session")
def amqp_addr(request):
    if PEER:
        host, port = PEER.rsplit(":", 1)
        return host, int(port)
    return request.getfixturevalue("fjord").amqp


@pytest.fixture
def params(amqp_addr):
    host, port = amqp_addr
    return pika.ConnectionParameters(host, port, heartbeat=30, blocked_connection_timeout=30)


@pytest.fixture
def conn(params):
    c = pika.BlockingConnection(params)
    yield c
    if c.is_open:
        c.close()


@pytest.fixture
def ch(conn):
    return conn.channel()
