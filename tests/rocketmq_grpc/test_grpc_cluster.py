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


def test_a_simple_consumers_deliveries_and_acks_survive_the_loss_of_the_queue_leader(cluster):
    """The pop state (what was handed out until when, what was acked) is on
    the replicated `__fjord_pop` shards: after the leader of the queue's
    partition is killed, its successor hands out only what was never handed
    out — acked messages never again, messages in flight only once their
    invisibility ran out (as a RocketMQ broker after a restart), then as a
    second attempt."""
    topic = f"grpc-fo-{uuid.uuid4().hex[:8]}"
    post_json(cluster.node(1), "/api/v1/topics", {"name": topic, "partitions": 1})
    for n in cluster.nodes:
        wait_until(lambda n=n: leaders(n, topic).get(0), 20, message=f"{topic} placed, seen from {n.http}")
    leader = leaders(cluster.node(1), topic)[0]
    survivor = cluster.node(1 if leader != 1 else 2)

    p = Producer(config(survivor.grpc), (topic,))
    p.startup()
    bodies = [b"f%d" % i for i in range(20)]
    try:
        for b in bodies:
            p.send(message(topic, b))
    finally:
        p.shutdown()

    invisible = 60
    group = f"gfo-{topic}"
    c = SimpleConsumer(config(survivor.grpc), group, {topic: FilterExpression("*")}, await_duration=2)
    c.startup()
    try:
        first = []
        deadline = time.monotonic() + 30
        while len(first) < 10 and time.monotonic() < deadline:
            first += c.receive(10 - len(first), invisible)
        handed_out_at = time.monotonic()
        assert len(first) == 10
        for m in first[:5]:
            c.ack(m)
        in_flight = {m.body for m in first[5:]}

        cluster.kill(leader)
        wait_until(lambda: leaders(survivor, topic).get(0) not in (None, leader), 30, message="a new leader")

        # The client finds the new leader at its next route update (30 s).
        rest, seen = [], []
        while len(rest) < 10 and time.monotonic() - handed_out_at < invisible - 5:
            try:
                got = c.receive(16, invisible)
            except Exception:  # noqa: BLE001 - the old leader's endpoint, until the route moves
                time.sleep(1)
                continue
            for m in got:
                seen.append(m.body)
                if m.body in in_flight:
                    continue
                rest.append(m)
                c.ack(m)
        assert not in_flight & set(seen), f"delivered again before their invisibility ran out: {seen}"
        assert Counter(m.body for m in rest) == Counter(set(bodies) - {m.body for m in first}), seen

        # Their invisibility runs out: each comes back once, a second attempt.
        again = []
        deadline = time.monotonic() + invisible + 30
        while len(again) < len(in_flight) and time.monotonic() < deadline:
            for m in c.receive(16, invisible):
                again.append(m)
                c.ack(m)
        assert sorted(m.body for m in again) == sorted(in_flight)
        assert all(m.delivery_attempt == 2 for m in again), [m.delivery_attempt for m in again]
    finally:
        c.shutdown()
        cluster.restart(leader)
