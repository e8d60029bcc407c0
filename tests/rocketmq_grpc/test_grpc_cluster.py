"""The RocketMQ 5.x gRPC client (rocketmq-python-client) against a 3-node
Fjord cluster: a producer connected to node 1 sends to the queues of all
three brokers, a SimpleConsumer connected to node 2 receives and acks every
message once, and the group's progress reaches its coordinator (the admin
API of node 3 reports no lag)."""

import json
import time
import urllib.request
import uuid
from collections import Counter

import pytest
from rocketmq import FilterExpression, Producer, SimpleConsumer

from fjord_cluster import running_cluster
from fjord_harness import wait_until
from test_grpc import config, message, receive_all


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("fjord-grpc-cluster-") as c:
        yield c


def post_json(node, path, body):
    req = urllib.request.Request(
        f"http://{node.http}{path}", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def leaders(node, topic):
    try:
        parts = node.http_json(f"/api/v1/topics/{topic}")["partitions"]
    except Exception:  # noqa: BLE001 - not there yet
        return {}
    return {p["partition"]: p.get("leader") for p in parts}


def test_grpc_clients_send_and_consume_through_different_nodes(cluster):
    topic = f"grpc-{uuid.uuid4().hex[:8]}"
    post_json(cluster.node(1), "/api/v1/topics", {"name": topic, "partitions": 6})
    for n in cluster.nodes:
        wait_until(lambda n=n: sorted(v or 0 for v in leaders(n, topic).values()) == [1, 1, 2, 2, 3, 3], 20,
                   message=f"{topic} placed, seen from {n.http}")

    p = Producer(config(cluster.node(1).grpc), (topic,))
    p.startup()
    bodies = [b"g%d" % i for i in range(30)]
    try:
        for b in bodies:
            p.send(message(topic, b, tag="t"))
    finally:
        p.shutdown()
    # Node 1's route spread the sends over every broker's queues.
    parts = cluster.node(3).http_json(f"/api/v1/topics/{topic}")["partitions"]
    per_node = Counter()
    for part in parts:
        per_node[part["leader"]] += part["messages"]
    assert set(per_node) == {1, 2, 3} and all(v > 0 for v in per_node.values()), per_node
    assert sum(per_node.values()) == len(bodies)

    group = f"gcg-{topic}"
    c = SimpleConsumer(config(cluster.node(2).grpc), group, {topic: FilterExpression("*")}, await_duration=2)
    c.startup()
    try:
        got = receive_all(c, len(bodies), timeout=60)
        time.sleep(0.5)
        got += receive_all(c, 1, timeout=3)
    finally:
        c.shutdown()
    counts = Counter(m.body for m in got)
    assert set(counts) == set(bodies) and all(v == 1 for v in counts.values()), counts

    # The acks moved the group's committed offsets at its coordinator.
    def settled():
        g = cluster.node(3).http_json(f"/api/v1/groups/{group}")
        committed = sum(o["committed_offset"] for o in g["offsets"] if o["topic"] == topic)
        return committed == len(bodies) and g["lag"] == 0

    wait_until(settled, 30, message="the group's progress at its coordinator")
