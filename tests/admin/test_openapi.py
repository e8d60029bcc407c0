"""The OpenAPI document is checked against the implementation by
schemathesis: generated requests (valid and invalid) for every operation,
every response checked against the documented status codes, content types
and schemas, schema-violating requests must be rejected, and no 5xx. It runs
against its own broker, since it creates and deletes things at random.

One check is left out: `positive_data_acceptance` (every schema-valid
request must succeed). Many schema-valid requests are rightly refused for
reasons an OpenAPI document cannot express: an offset past the end of the
partition (416), a partition count above the configured maximum, a topic
name the broker does not allow, `partitions` without `topic` (400); those
are documented responses, and the other checks verify their shape."""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from fjord_fixtures import stop_checked
from fjord_harness import FjordServer


def test_openapi_document_is_served(api):
    status, spec = api.get("/api/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for p in [
        "/api/v1/cluster",
        "/api/v1/topics/{topic}",
        "/api/v1/topics/{topic}/messages",
        "/api/v1/groups/{group}/offsets",
        "/api/v1/delayed",
        "/api/v1/dlq/{group}/resend",
        "/metrics",
        "/readyz",
    ]:
        assert p in paths, p
    assert set(paths["/api/v1/topics/{topic}"]) >= {"get", "patch", "delete"}


def test_schemathesis_finds_no_mismatch():
    with tempfile.TemporaryDirectory(prefix="fjord-schemathesis-") as d:
        server = FjordServer(Path(d) / "data", env={"FJORD_STORAGE__KEY_INDEX": "true"}).start()
        try:
            base = f"http://{server.http}"
            # Some state for the operations to find.
            req = urllib.request.Request(
                base + "/api/v1/topics",
                data=json.dumps({"name": "seed", "partitions": 2}).encode(),
                headers={"content-type": "application/json"},
            )
            urllib.request.urlopen(req, timeout=10).read()
            exe = Path(sys.executable).with_name("schemathesis")
            cmd = [
                str(exe),
                "run",
                f"{base}/api/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                os.environ.get("FJORD_SCHEMATHESIS_EXAMPLES", "40"),
                "--request-timeout",
                "20",
                "--seed",
                "1",
                "--no-color",
            ]
            # Its run directory (.schemathesis/) goes with the broker's temp dir.
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=d)
            assert r.returncode == 0, f"schemathesis found problems:\n{r.stdout[-12000:]}\n{r.stderr[-4000:]}"
            assert server.running, server.log_tail()
        finally:
            stop_checked(server)
