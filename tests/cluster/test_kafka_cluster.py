"""Kafka clients against a 3-node Fjord cluster: every node answers for the
whole cluster, partitions and group coordinators are spread over the
nodes, and the loss of a node (or of the controller leader) stops only
what it led, with nothing acknowledged lost.
"""

import json
import subprocess
import time
import uuid
from collections import Counter

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import wait_for
from fjord_harness import fjord_bin


def admin(node) -> AdminClient:
    return AdminClient({"bootstrap.servers": node.bootstrap})


def metadata(node, topic=None):
    return admin(node).list_topics(topic=topic, timeout=10)


def leaders(node, topic) -> dict:
    md = metadata(node, topic)
    t = md.topics.get(topic)
    return {p.id: p.leader for p in t.partitions.values()} if t and not t.error else {}


def create_topic(node, name, partitions, everywhere=None):
    """Creates a topic through `node`; with `everywhere` (the cluster),
    waits until every node's metadata has it, as a client retrying
    UNKNOWN_TOPIC_OR_PARTITION would (nodes apply the metadata log each at
    its own pace, a few milliseconds apart)."""
    a = admin(node)
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    fs[name].result(timeout=30)
    for n in (everywhere.nodes if everywhere else []):
        wait_for(lambda: len(leaders(n, name)) == partitions, 10, f"{name} on node {n.bootstrap}")


def produce(bootstrap, topic, values, **conf):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **conf})
    failed = []
    for v in values:
        p.produce(topic, value=v.encode(), key=v.encode(), on_delivery=lambda e, m: e and failed.append(e))
        p.poll(0)
    assert p.flush(30) == 0, "messages left unsent"
    assert not failed, failed
    return p


def consume_all(bootstrap, topic, group, expected, timeout=60):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    seen = Counter()
    deadline = time.monotonic() + timeout
    try:
        while sum(seen.values()) < expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            seen[m.value().decode()] += 1
        c.commit(asynchronous=False)
    finally:
        c.close()
    return seen


def test_every_node_describes_the_whole_cluster(cluster):
    controllers = set()
    for n in cluster.nodes:
        md = metadata(n)
        assert sorted(md.brokers) == [1, 2, 3], md.brokers
        for b in md.brokers.values():
            assert b.host == "127.0.0.1"
            assert b.port == cluster.node(b.id).kafka_port
        assert md.cluster_id == "fjord-test-cluster"
        controllers.add(md.controller_id)
    # Every node names the same controller leader, one of the voters.
    assert len(controllers) == 1 and controllers <= {1, 2, 3}, controllers


def test_any_nodes_admin_api_reports_every_node(cluster):
    for n in cluster.nodes:
        v = n.http_json("/api/v1/cluster")
        assert [x["id"] for x in v["nodes"]] == [1, 2, 3], v
        assert v["unavailable_nodes"] == []
        assert v["controller_id"] in (1, 2, 3)
        # Each node reports its own listeners (asked, not guessed).
        for x in v["nodes"]:
            assert x["listeners"]["kafka"] == cluster.node(x["id"]).bootstrap
    alone = cluster.node(2).http_json("/api/v1/cluster?scope=node")
    assert [x["id"] for x in alone["nodes"]] == [2]


def cluster_nodes(node):
    """`fjord cluster nodes -o json` against `node`'s admin API."""
    out = subprocess.run([fjord_bin(), "--server", f"http://{node.http}", "cluster", "nodes", "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    return {n["id"]: n for n in json.loads(out)}


def test_fjord_cluster_nodes_lists_roles_and_states(cluster):
    nodes = cluster_nodes(cluster.node(3))
    assert sorted(nodes) == [1, 2, 3]
    assert all(n["state"] == "serving" and n["controller"] for n in nodes.values()), nodes
    assert sum(n["controller_leader"] for n in nodes.values()) == 1
    assert nodes[1]["listeners"]["kafka"] == cluster.node(1).bootstrap


def test_a_topic_created_on_one_node_is_spread_over_all(cluster):
    topic = f"spread-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.node(2), topic, 12, cluster)
    for n in cluster.nodes:
        got = leaders(n, topic)
        assert len(got) == 12
        assert Counter(got.values()) == {1: 4, 2: 4, 3: 4}, got


def test_produce_and_consume_across_nodes(cluster):
    topic = f"across-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.node(1), topic, 12, cluster)
    values = [f"v{i}" for i in range(600)]
    # Bootstrapped from one node, the clients find every leader.
    produce(cluster.node(3).bootstrap, topic, values)
    seen = consume_all(cluster.node(1).bootstrap, topic, f"g-{topic}", len(values))
    assert set(seen) == set(values) and all(c == 1 for c in seen.values()), seen.most_common(3)
    # The group's offsets were committed on its coordinator: a new member
    # of the group, bootstrapped elsewhere, starts at the end.
    c = Consumer({"bootstrap.servers": cluster.node(2).bootstrap, "group.id": f"g-{topic}"})
    committed = c.committed([TopicPartition(topic, p) for p in range(12)], timeout=10)
    c.close()
    assert sum(tp.offset for tp in committed) == len(values), committed


def test_group_coordinators_are_spread(cluster):
    a = admin(cluster.node(1))
    coordinators = set()
    for i in range(24):
        group = f"spread-group-{i}"
        c = Consumer({"bootstrap.servers": cluster.node(1).bootstrap, "group.id": group})
        # Committing needs the coordinator: the client finds it.
        topic = f"coord-{uuid.uuid4().hex[:6]}"
        create_topic(cluster.node(1), topic, 1)
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        c.close()
        desc = a.describe_consumer_groups([group])[group].result(timeout=10)
        coordinators.add(desc.coordinator.id)
        if coordinators == {1, 2, 3}:
            break
    assert coordinators == {1, 2, 3}, coordinators


def test_a_killed_node_stops_only_its_partitions_and_loses_nothing(cluster):
    topic = f"loss-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.node(1), topic, 6, cluster)
    before = [f"b{i}" for i in range(300)]
    produce(cluster.bootstrap, topic, before)
    placed = leaders(cluster.node(1), topic)
    victim = 3
    cluster.kill(victim)
    try:
        # Once its lease runs out, its partitions have no leader; the others
        # keep theirs.
        def fenced():
            got = leaders(cluster.node(1), topic)
            return got if all((got[p] == -1) == (placed[p] == victim) for p in got) else None

        wait_for(fenced, 20, "the dead node's partitions to lose their leader")
        down = cluster.node(1).http_json("/api/v1/cluster")["unavailable_nodes"]
        assert [(d["id"], d["state"]) for d in down] == [(victim, "fenced")], down
        assert cluster_nodes(cluster.node(2))[victim]["state"] == "fenced"
        # Writes to the surviving partitions still succeed.
        p = Producer({"bootstrap.servers": cluster.node(1).bootstrap, "acks": "all"})
        alive = [part for part, leader in placed.items() if leader != victim]
        for part in alive:
            p.produce(topic, value=b"during", partition=part)
        assert p.flush(20) == 0
    finally:
        cluster.restart(victim)
    # Back: every partition has its leader again and every acknowledged
    # message is there.
    wait_for(lambda: leaders(cluster.node(2), topic) == placed, 30, "leaders to come back")
    seen = consume_all(cluster.node(2).bootstrap, topic, f"g-{topic}", len(before) + len(alive))
    assert set(before) <= set(seen), sorted(set(before) - set(seen))[:5]
    assert seen["during"] == len(alive)


def test_controller_leader_loss_elects_another_and_changes_continue(cluster):
    old = metadata(cluster.node(1)).controller_id
    cluster.kill(old)
    try:
        other = next(n for n in cluster.nodes if n.running)

        def new_controller():
            try:
                c = metadata(other).controller_id
            except KafkaException:
                return None
            return c if c not in (-1, old) else None

        started = time.monotonic()
        wait_for(new_controller, 15, "a new controller leader")
        # Metadata changes work again, from any surviving node.
        topic = f"after-failover-{uuid.uuid4().hex[:6]}"
        create_topic(other, topic, 3)
        elapsed = time.monotonic() - started
        assert elapsed < 15, elapsed
    finally:
        cluster.restart(old)
    wait_for(lambda: sorted(metadata(cluster.node(old)).brokers) == [1, 2, 3], 30, "the old leader to rejoin")
