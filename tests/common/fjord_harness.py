"""The `fjord serve` process under test, and small test helpers.

The binary is taken from $FJORD_BIN (scripts/test-kafka-clients sets it),
else target/debug/fjord under the repository root.
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]  # tests/common/ -> repository root

# Settings that keep group rebalances fast in tests: Kafka's own test
# brokers use group.initial.rebalance.delay.ms=0 too.
TEST_ENV = {
    "FJORD_GROUPS__INITIAL_REBALANCE_DELAY_MS": "0",
    # KIP-848 members heartbeat every second, so reassignment is quick.
    "FJORD_GROUPS__CONSUMER_HEARTBEAT_INTERVAL_MS": "1000",
    "FJORD_LOG__LEVEL": "info",
}


def fjord_bin() -> str:
    path = os.environ.get("FJORD_BIN") or str(REPO / "target" / "debug" / "fjord")
    if not os.access(path, os.X_OK):
        pytest.exit(f"fjord binary not found at {path}: run `cargo build -p fjord` or set FJORD_BIN", returncode=2)
    return path


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port free now, outside the kernel's ephemeral range when possible:
    a port a process will bind later (a node restarted on its old port, a
    node started after others) must not be taken meanwhile by some outgoing
    connection's ephemeral source port."""
    lo, hi = _ephemeral_range()
    candidates = [p for p in range(20000, 32000) if not lo <= p <= hi]
    for port in random.sample(candidates, min(200, len(candidates))):
        if port_is_free(port):
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    # Something listening on another address of the port (e.g. [::1]) would
    # also answer `localhost`.
    for family, addr in ((socket.AF_INET6, "::1"),):
        try:
            with socket.socket(family) as s:
                s.settimeout(0.2)
                if s.connect_ex((addr, port)) == 0:
                    return False
        except OSError:
            pass
    return True


# Servers started by this process, for failure reports (conftest.py).
LIVE: list = []


class FjordServer:
    """One `fjord serve` process; `restart()` keeps its data dir and port."""

    def __init__(self, data_dir: Path, kafka_port: int | None = None, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.run_dir = self.data_dir.parent
        self.kafka_port = kafka_port
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.bound: dict = {}
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 20.0) -> "FjordServer":
        fixed_port = self.kafka_port is not None
        for attempt in range(5):
            port = self.kafka_port if fixed_port else free_port()
            try:
                self._spawn(port, timeout)
                self.kafka_port = port
                if self not in LIVE:
                    LIVE.append(self)
                return self
            except PortTaken:
                if fixed_port and attempt >= 2:
                    raise
                time.sleep(0.2)
        raise RuntimeError("could not start fjord: no free port")

    def _spawn(self, port: int, timeout: float):
        self.launch(port)
        self.await_ready(timeout)

    def launch(self, port: int):
        """Starts the process without waiting for it to be ready (cluster
        nodes get ready together, once a quorum of them runs)."""
        self.starts += 1
        self.ready_path = self.run_dir / "ready.json"
        if self.ready_path.exists():
            self.ready_path.unlink()
        env = dict(os.environ)
        env.update(TEST_ENV)
        env.update(self.extra_env)
        env["FJORD_LISTENERS__HTTP__BIND"] = "127.0.0.1:0"
        env["FJORD_LISTENERS__KAFKA__BIND"] = f"127.0.0.1:{port}"
        # Every other listener on an ephemeral port too, so brokers of
        # parallel tests never collide (and never take the default ports).
        for name in ("ROCKETMQ_NAMESRV", "ROCKETMQ_BROKER", "ROCKETMQ_GRPC", "AMQP", "AMQP_MANAGEMENT"):
            env.setdefault(f"FJORD_LISTENERS__{name}__BIND", "127.0.0.1:0")
        self.log_path = self.run_dir / f"fjord-{self.starts}.log"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [fjord_bin(), "serve", "--data-dir", str(self.data_dir), "--ready-file", str(self.ready_path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def await_ready(self, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_path.exists():
                self.bound = json.loads(self.ready_path.read_text())
                return
            rc = self.proc.poll()
            if rc is not None:
                out = self.log_tail()
                if "Address already in use" in out or "address in use" in out.lower():
                    raise PortTaken(out)
                raise RuntimeError(f"fjord exited with {rc} before it was ready:\n{out}")
            time.sleep(0.02)
        self.proc.kill()
        raise RuntimeError(f"fjord not ready within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, and return the exit code (None if not running)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"fjord did not exit within {timeout}s of SIGTERM:\n{self.log_tail()}")
        return proc.returncode

    def restart(self) -> "FjordServer":
        """Stops (asserting a clean exit) and starts again on the same data
        directory and Kafka port."""
        rc = self.stop()
        assert rc == 0, f"fjord exited with {rc} on SIGTERM:\n{self.log_tail()}"
        self.start()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- addresses and helpers ---------------------------------------------

    @property
    def bootstrap(self) -> str:
        return self.bound["kafka"]

    @property
    def namesrv(self) -> str:
        """The RocketMQ name server address (remoting protocol)."""
        return self.bound["rocketmq_namesrv"]

    @property
    def grpc(self) -> str:
        """The RocketMQ 5.x gRPC endpoint."""
        return self.bound["rocketmq_grpc"]

    @property
    def amqp(self) -> tuple:
        """The AMQP 0-9-1 listener as (host, port)."""
        host, port = self.bound["amqp"].rsplit(":", 1)
        return host, int(port)

    @property
    def http(self) -> str:
        return self.bound["http"]

    def http_json(self, path: str):
        with urllib.request.urlopen(f"http://{self.http}{path}", timeout=10) as r:
            return json.loads(r.read())

    def topic_info(self, topic: str) -> dict:
        return self.http_json(f"/api/v1/topics/{topic}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except (OSError, AttributeError):
            return ""
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        return "\n".join(text.splitlines()[-lines:])


class PortTaken(Exception):
    pass


def wait_until(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    """Polls `predicate` until it returns a truthy value; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
