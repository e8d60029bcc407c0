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
    yield from run_broker("fjord-rmq-")


@pytest.fixture(scope="session")
def namesrv(fjord) -> str:
    return fjord.namesrv
