"""Fixtures for the admin API, CLI and metrics tests.

Every test talks to a real `fjord serve` process: over HTTP with plain
urllib, with the real `fjord` CLI binary, and with an unmodified Kafka
client (kafka-python) to make traffic.
"""

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))

from fjord_fixtures import *  # noqa: E402,F401,F403
from fjord_fixtures import run_broker  # noqa: E402


@pytest.fixture(scope="session")
def fjord():
    yield from run_broker("fjord-admin-", env={"FJORD_STORAGE__KEY_INDEX": "true"})


class Api:
    """A tiny JSON client: call(method, path, body) -> (status, json or text)."""

    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, body=None, raw: bytes | None = None, content_type="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, text, ctype = r.status, r.read().decode(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as e:
            status, text, ctype = e.code, e.read().decode(), e.headers.get("content-type", "")
        if "json" in ctype and text:
            return status, json.loads(text)
        return status, text

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)


@pytest.fixture(scope="session")
def make_api():
    """make_api(server) -> an Api for another broker."""
    return lambda server: Api(f"http://{server.http}")


@pytest.fixture(scope="session")
def api(fjord, make_api) -> Api:
    return make_api(fjord)
