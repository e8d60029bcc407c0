"""Fixtures for the RocketMQ 5.x gRPC client tests.

Every test talks to a real `fjord serve` process over gRPC (plaintext) with
the unmodified PyPI client `rocketmq-python-client` 5.1.2. Consumer-group
settings (retries, ordered consumption) are set as an operator would with
`mqadmin updateSubGroup`: a remoting UPDATE_AND_CREATE_SUBSCRIPTIONGROUP
request to the name server port (remoting.py).
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
def endpoint(fjord) -> str:
    return fjord.grpc
