"""The crates.io `rocketmq` 5.x client (Rust, gRPC) against a real
`fjord serve`: tests/rocketmq_rust is a program built from it that
produces with a Producer and consumes with a SimpleConsumer (tag filter,
ack). scripts/test-rocketmq-clients builds it and sets RMQ_RUST_CLIENT."""

import os
import subprocess

import pytest
from rocketmq import FilterExpression, SimpleConsumer

from test_grpc import config, receive_all

BIN = os.environ.get("RMQ_RUST_CLIENT")


@pytest.mark.skipif(not BIN, reason="RMQ_RUST_CLIENT not set (scripts/test-rocketmq-clients builds it)")
def test_rust_producer_and_simple_consumer(endpoint, unique):
    topic, group = unique("topic"), unique("cg")
    out = subprocess.run([BIN, endpoint, topic, group, "5"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"rust client failed:\n{out.stdout}\n{out.stderr[-3000:]}"
    received = sorted(l for l in out.stdout.splitlines() if l.startswith("received "))
    assert received == sorted(f"received rust rust-{i}" for i in range(5)), out.stdout
    # Acked by the Rust consumer: nothing is left for its group.
    c = SimpleConsumer(config(endpoint), group, {topic: FilterExpression("rust")}, await_duration=2)
    c.startup()
    try:
        assert receive_all(c, 1, timeout=4, ack=False) == []
    finally:
        c.shutdown()
