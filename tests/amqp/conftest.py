"""Fixtures for the AMQP 0-9-1 client tests.

Every test talks to a real `fjord serve` process over TCP with unmodified
pika (PyPI). The session broker listens for AMQP on an ephemeral port;
the seed test starts its own broker on 5672, because the article's
programs connect to `localhost` with pika's defaults and are run exactly
as written.
"""

import sys
from pathlib import Path

import pika
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

from fjord_fixtures import *  # noqa: E402,F401,F403
from fjord_fixtures import run_broker  # noqa: E402


@pytest.fixture(scope="session")
def fjord():
    yield from run_broker("fjord-amqp-")


@pytest.fixture
def params(fjord):
    host, port = fjord.amqp
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
