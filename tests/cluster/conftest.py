"""A real cluster of `fjord serve` processes for the multi-node suites.

One cluster per session (3 nodes, all controllers), shared by the tests;
tests that kill a node restore it before they end (`cluster.restart(n)`).
Clients are unmodified ones from PyPI, bootstrapping from any node.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

from fjord_fixtures import *  # noqa: E402,F401,F403
from fjord_cluster import CLUSTER_ENV, Cluster, running_cluster  # noqa: E402,F401
from fjord_harness import wait_until  # noqa: E402


@pytest.fixture(scope="session")
def cluster():
    with running_cluster("fjord-cluster-") as c:
        yield c


def wait_for(predicate, timeout: float, message: str, interval: float = 0.1):
    """fjord_harness.wait_until, named for these tests."""
    return wait_until(predicate, timeout, interval=interval, message=message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the tail of every node's log (the
    nodes' files live in the session's temporary directory, gone once
    the run ends, and a cluster failure is rarely explained by the
    client's side alone)."""
    outcome = yield
    report = outcome.get_result()
    c = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(c, Cluster):
        for i, n in enumerate(c.nodes, start=1):
            report.sections.append((f"node {i} log (tail)", n.log_tail(80)))
