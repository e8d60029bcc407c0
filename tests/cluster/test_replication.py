"""Replicated partitions on a 3-node Fjord cluster, through unmodified
Kafka clients (confluent-kafka): topics created with replication factor 3,
or without one, list three replicas all in sync (`__fjord_offsets` too); the loss of a partition's leader elects
an in-sync follower within seconds while an idempotent acks=all producer
keeps writing, and nothing acknowledged is lost or duplicated; the killed
node comes back as a follower, catches up and is in sync again; with
min.insync.replicas=3 a write while a replica is down is refused with
NOT_ENOUGH_REPLICAS; leaders return to their preferred replicas; a partition moved to other nodes under an
idempotent producer's load loses and duplicates nothing; a consumer group
keeps its members and assignments when its coordinator moves.
"""

import json
import subprocess
import threading
import time
import urllib.request
import uuid

from confluent_kafka import Consumer, ElectionType, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
from conftest import wait_for
from fjord_harness import fjord_bin
from test_kafka_cluster import consume_all, metadata, produce


def create_replicated(cluster, name, partitions, config=None):
    a = AdminClient({"bootstrap.servers": cluster.node(1).bootstrap})
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3, config=config or {})])
    fs[name].result(timeout=30)
    # Every running node's view, not just one: a node that has just been
    # restarted by an earlier test may still be rejoining.
    for i, n in enumerate(cluster.nodes):
        if n.running:
            wait_for(lambda n=n: all_in_sync(n, name, partitions, 3), 20, f"{name} fully in sync on node {i + 1}")


def partitions(node, topic):
    t = metadata(node, topic).topics.get(topic)
    return {} if t is None or t.error else t.partitions


def all_in_sync(node, topic, count, size):
    parts = partitions(node, topic)
    return len(parts) == count and all(len(p.replicas) == 3 and len(p.isrs) == size for p in parts.values())


def metric(node, name):
    """The value of an unlabelled series on `node`'s /metrics."""
    with urllib.request.urlopen(f"http://{node.http}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not on /metrics")


def health_check(node, name):
    return next(c for c in node.http_json("/api/v1/cluster/health")["checks"] if c["name"] == name)


def test_topics_and_the_offsets_topic_get_three_replicas_by_default(cluster):
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    topic = f"rf-default-{uuid.uuid4().hex[:8]}"
    a.create_topics([NewTopic(topic, num_partitions=2)])[topic].result(timeout=30)
    wait_for(lambda: all_in_sync(cluster.node(1), topic, 2, 3), 20, f"{topic} on three replicas")
    # The group coordinators' partitions too: a node's loss moves them.
    offsets = cluster.node(1).http_json("/api/v1/topics/__fjord_offsets")["partitions"]
    assert offsets and all(len(p["replicas"]) == 3 for p in offsets), offsets
    res = ConfigResource(ResourceType.BROKER, "1")
    configs = a.describe_configs([res])[res].result(timeout=30)
    assert configs["default.replication.factor"].value == "3"
    assert configs["broker.rack"].value == "r1"
    assert configs["replica.selector.class"].value == "org.apache.kafka.common.replica.RackAwareReplicaSelector"


def test_a_leaders_loss_elects_an_in_sync_follower_and_loses_nothing(cluster):
    topic = f"repl-{uuid.uuid4().hex[:8]}"
    create_replicated(cluster, topic, 3)
    placed = partitions(cluster.node(1), topic)
    assert all(sorted(p.replicas) == [1, 2, 3] for p in placed.values()), placed
    before = [f"b{i}" for i in range(300)]
    produce(cluster.bootstrap, topic, before)

    victim = placed[0].leader
    led = {pid for pid, p in placed.items() if p.leader == victim}
    cluster.kill(victim)
    try:
        survivor = next(n for n in cluster.nodes if n.running)

        def new_leaders():
            now = partitions(survivor, topic)
            moved = all(now[pid].leader not in (-1, victim) for pid in led) if now else False
            return now if moved else None

        now = wait_for(new_leaders, 20, "in-sync followers to take over")
        for pid in led:
            assert victim not in now[pid].isrs, now[pid].isrs
        # The new leader reports its under-replicated partitions.
        new = cluster.node(now[min(led)].leader)
        assert metric(new, "fjord_under_replicated_partitions") >= 1
        assert metric(new, "fjord_leader_elections_total") >= 1
        assert not health_check(new, "partitions_replicated")["ok"]
        # Writes keep going to every partition, the moved ones included.
        during = [f"d{i}" for i in range(300)]
        produce(survivor.bootstrap, topic, during)
    finally:
        cluster.restart(victim)
    # Back as a follower: caught up and in sync again.
    wait_for(lambda: all_in_sync(cluster.node(victim), topic, 3, 3), 30, "the restarted node in sync again")
    wait_for(lambda: all(metric(n, "fjord_under_replicated_partitions") == 0 for n in cluster.nodes), 20,
             "no partition under-replicated")
    assert all(health_check(n, "partitions_replicated")["ok"] for n in cluster.nodes)
    # Leadership goes back to the preferred replicas once they are in sync,
    # so leaders spread again; electing them by hand is then not needed.
    wait_for(lambda: {i: p.leader for i, p in partitions(cluster.node(1), topic).items()}
             == {i: p.replicas[0] for i, p in placed.items()}, 30, "leaders back on their preferred replicas")
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    done = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(timeout=30)
    assert done[TopicPartition(topic, 0)].code() == KafkaError.ELECTION_NOT_NEEDED, done
    seen = consume_all(cluster.node(victim).bootstrap, topic, f"g-{topic}", len(before) + len(during))
    missing = set(before + during) - set(seen)
    assert not missing, sorted(missing)[:5]
    dup = {v: n for v, n in seen.items() if n > 1}
    assert not dup, list(dup.items())[:5]


def test_too_few_in_sync_replicas_refuse_acks_all(cluster):
    topic = f"minisr-{uuid.uuid4().hex[:8]}"
    create_replicated(cluster, topic, 1, {"min.insync.replicas": "3"})
    leader = partitions(cluster.node(1), topic)[0].leader
    victim = next(n for n in (1, 2, 3) if n != leader)
    cluster.kill(victim)
    try:
        wait_for(lambda: all_in_sync(cluster.node(leader), topic, 1, 2), 20, "the in-sync set to shrink")
        errors = []
        p = Producer({
            "bootstrap.servers": cluster.node(leader).bootstrap,
            "acks": "all",
            "message.timeout.ms": 5000,
            "retries": 0,
        })
        p.produce(topic, value=b"refused", on_delivery=lambda e, m: errors.append(e))
        p.flush(10)
        assert errors and errors[0] is not None, errors
        assert errors[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, errors[0]
        # acks=1 needs the leader only.
        ok = []
        p1 = Producer({"bootstrap.servers": cluster.node(leader).bootstrap, "acks": "1"})
        p1.produce(topic, value=b"leader-only", on_delivery=lambda e, m: ok.append(e))
        p1.flush(10)
        assert ok == [None], ok
    finally:
        cluster.restart(victim)
    wait_for(lambda: all_in_sync(cluster.node(victim), topic, 1, 3), 30, "the restarted node in sync again")


def fjord(node, *args):
    """The `fjord` CLI against `node`'s admin API; its JSON output."""
    out = subprocess.run([fjord_bin(), "--server", f"http://{node.http}", *args, "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else None


def test_a_reassignment_under_load_loses_and_duplicates_nothing(cluster):
    topic = f"move-{uuid.uuid4().hex[:8]}"
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    wait_for(lambda: partitions(cluster.node(3), topic), 10, "the topic everywhere")
    source = partitions(cluster.node(1), topic)[0].leader
    dest = [n for n in (1, 2, 3) if n != source]

    # An idempotent acks=all producer writes all along the move.
    values = [f"v{i}" for i in range(4000)]
    failed, stop = [], threading.Event()

    def write():
        p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 5})
        for v in values:
            p.produce(topic, value=v.encode(), on_delivery=lambda e, m: e and failed.append(e))
            p.poll(0)
            if v.endswith("00"):
                time.sleep(0.05)
        assert p.flush(60) == 0
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)
    moved = fjord(cluster.node(2), "topic", "reassign", topic, "-p", "0", "-r", ",".join(map(str, dest)))
    assert sorted(moved["partitions"][0]["adding"]) == dest, moved
    assert not stop.is_set(), "the move started while the producer was writing"
    # Done once the old replica is gone and the new ones lead.
    wait_for(lambda: (d := fjord(cluster.node(3), "topic", "describe", topic)["partitions"][0])["replicas"] == dest
             and not d.get("adding") and d.get("leader") in dest, 30, "the move to complete")
    writer.join(90)
    assert stop.is_set() and not failed, failed[:3]
    listed = partitions(cluster.node(1), topic)[0]
    assert sorted(listed.replicas) == sorted(dest) and listed.leader == dest[0], listed
    seen = consume_all(cluster.node(dest[1]).bootstrap, topic, f"g-{topic}", len(values))
    assert set(seen) == set(values), sorted(set(values) - set(seen))[:5]
    assert max(seen.values()) == 1, [v for v, n in seen.items() if n > 1][:5]
    # Cancelling with no move in progress is refused.
    r = subprocess.run([fjord_bin(), "--server", f"http://{cluster.node(1).http}", "topic", "reassign", topic,
                        "-p", "0", "--cancel"], capture_output=True, text=True)
    assert r.returncode != 0 and "no reassignment" in r.stderr, r.stderr


def test_a_group_carries_on_without_a_rebalance_when_its_coordinator_moves(cluster):
    """The group's membership is stored beside its offsets: the node that
    takes the coordinator over (its offsets partition's new leader after a
    kill -9, then the preferred replica again after the restart) restores
    the generation and the members, so the consumer keeps its assignment —
    no revocation, no loss — and its commits are accepted throughout."""
    topic = f"coord-move-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    create_replicated(cluster, topic, 3)
    produce(cluster.bootstrap, topic, [f"a{i}" for i in range(100)])
    events = []
    c = Consumer({
        "bootstrap.servers": cluster.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic],
                on_assign=lambda _c, ps: events.append(("assigned", len(ps))),
                on_revoke=lambda _c, ps: events.append(("revoked", len(ps))),
                on_lost=lambda _c, ps: events.append(("lost", len(ps))))
    seen = set()

    def consume(n, what):
        deadline = time.monotonic() + 60
        while len(seen) < n:
            assert time.monotonic() < deadline, f"{what}: {len(seen)} of {n} read"
            m = c.poll(0.5)
            if m is not None and not m.error():
                seen.add(m.value().decode())
        c.commit(asynchronous=False)

    def coordinator(via):
        a = AdminClient({"bootstrap.servers": via.bootstrap})
        try:
            return a.describe_consumer_groups([group])[group].result(timeout=10).coordinator.id
        except Exception:
            return None

    try:
        consume(100, "before")
        first = coordinator(cluster.node(1))
        assert first in (1, 2, 3)
        survivor = cluster.node(1 if first != 1 else 2)
        cluster.kill(first)
        try:
            wait_for(lambda: coordinator(survivor) not in (None, first), 30, "another coordinator")
            produce(survivor.bootstrap, topic, [f"b{i}" for i in range(100)])
            consume(200, "after the coordinator's loss")
        finally:
            cluster.restart(first)
        # Back in sync, the restarted node leads its offsets partition again.
        wait_for(lambda: coordinator(survivor) == first, 60, "the preferred coordinator back")
        produce(survivor.bootstrap, topic, [f"c{i}" for i in range(100)])
        consume(300, "after the coordinator's return")
        # One assignment, never revoked or lost (closing revokes it).
        assert events == [("assigned", 3)], events
    finally:
        c.close()


def records_out(node):
    return node.http_json("/api/v1/cluster?scope=node")["nodes"][0]["records_out_total"]


def test_a_consumer_reads_from_the_in_sync_replica_in_its_rack(cluster):
    """KIP-392 with the rack-aware selector (node N is in rack rN): a
    consumer whose client.rack is a follower's rack is sent there by the
    leader and reads everything from that follower; one without a rack
    reads from the leader."""
    topic = f"rack-{uuid.uuid4().hex[:8]}"
    create_replicated(cluster, topic, 1)
    leader = partitions(cluster.node(1), topic)[0].leader
    follower = next(n for n in (1, 2, 3) if n != leader)
    values = [f"r{i}" for i in range(200)]
    produce(cluster.bootstrap, topic, values)

    def read_all(rack):
        conf = {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": f"g-{topic}-{rack}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        if rack:
            conf["client.rack"] = rack
        before = {n: records_out(cluster.node(n)) for n in (1, 2, 3)}
        c = Consumer(conf)
        c.assign([TopicPartition(topic, 0, 0)])
        seen = set()
        deadline = time.monotonic() + 60
        try:
            while len(seen) < len(values):
                assert time.monotonic() < deadline, f"{len(seen)} of {len(values)} read"
                m = c.poll(0.5)
                if m is not None and not m.error():
                    seen.add(m.value().decode())
        finally:
            c.close()
        assert seen == set(values)
        return {n: records_out(cluster.node(n)) - before[n] for n in (1, 2, 3)}

    served = read_all(f"r{follower}")
    assert served[follower] >= len(values) and served[leader] == 0, (leader, follower, served)
    served = read_all(None)
    assert served[leader] >= len(values) and served[follower] == 0, (leader, follower, served)
