"""Fixtures for the RocketMQ remoting-protocol client tests.

Every test talks to a real `fjord serve` process over TCP with the
unmodified RocketMQ C++ client (PyPI `rocketmq-client-python` 0.5.0rc2,
whose wheel bundles rocketmq-client-cpp). Consumers that must survive a
crash run in child processes (consumer_proc.py).

The C++ client keeps broadcasting offsets under $HOME/.rocketmq_offsets and
logs under $HOME/logs; scripts/test-rocketmq-clients points HOME at a fresh
directory so runs never see each other's state.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

from fjord_fixtures import *  # noqa: E402,F401,F403
from fjord_fixtures import run_broker  # noqa: E402


@pytest.fixture(scope="session")
def fjord():
    # A crashed orderly consumer's queue locks expire after this TTL before
    # its successor may take them (RocketMQ's 60 s by default). 25 s still
    # outlives rocketmq-client-cpp's lock renewal every 20 s, and saves the
    # crash test 35 s of waiting.
    yield from run_broker("fjord-rmq-", env={"FJORD_MESSAGING__ORDER_LOCK_TTL_MS": "25000"})


@pytest.fixture(scope="session")
def namesrv(fjord) -> str:
    return fjord.namesrv
