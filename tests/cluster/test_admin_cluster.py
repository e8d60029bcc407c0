"""The admin API of any node answers for the whole cluster: topic figures
come from each partition's leader, a group's offsets and lag from its
coordinator, and a partition's messages from its leader (relayed)."""

import urllib.error
import uuid

from conftest import wait_for
from test_kafka_cluster import consume_all, create_topic, leaders, produce


def test_any_node_answers_for_topics_groups_and_messages(cluster):
    topic = f"admin-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.node(1), topic, 6, cluster)
    values = [f"m{i}" for i in range(60)]
    produce(cluster.node(3).bootstrap, topic, values)
    group = f"g-{topic}"
    seen = consume_all(cluster.node(1).bootstrap, topic, group, len(values))
    assert sum(seen.values()) == len(values)
    # 30 more after the group committed: a lag every node must report.
    produce(cluster.node(2).bootstrap, topic, [f"late{i}" for i in range(30)])
    led = leaders(cluster.node(1), topic)
    assert set(led.values()) == {1, 2, 3}, led

    for n in cluster.nodes:
        detail = n.http_json(f"/api/v1/topics/{topic}")
        assert sum(p["messages"] for p in detail["partitions"]) == 90, detail
        assert {p["partition"]: p["leader"] for p in detail["partitions"]} == led
        listed = next(t for t in n.http_json("/api/v1/topics")["topics"] if t["name"] == topic)
        assert listed["messages"] == 90, listed

        g = n.http_json(f"/api/v1/groups/{group}")
        assert sum(o["committed_offset"] for o in g["offsets"]) == 60, g
        assert g["lag"] == 30, g
        summary = [x for x in n.http_json("/api/v1/groups")["groups"] if x["name"] == group]
        assert len(summary) == 1 and summary[0]["lag"] == 30, summary
        # A query searches every node's partitions.
        found = n.http_json(f"/api/v1/topics/{topic}/messages?start_ms=0&limit=1000")["messages"]
        assert len(found) == 90 and len({(m["partition"], m["offset"]) for m in found}) == 90

    # A partition led by node 2, browsed through node 1 and node 3.
    p = next(p for p, leader in led.items() if leader == 2)
    stored = next(x for x in cluster.node(2).http_json(f"/api/v1/topics/{topic}")["partitions"] if x["partition"] == p)
    assert stored["messages"] > 0
    for n in (cluster.node(1), cluster.node(3)):
        page = n.http_json(f"/api/v1/topics/{topic}/partitions/{p}/messages?limit=1000")
        assert len(page["messages"]) == stored["messages"], page
        assert page["high_watermark"] == stored["high_watermark"]

    # Something nobody has is still a 404, from any node.
    for n in cluster.nodes:
        try:
            n.http_json(f"/api/v1/groups/no-such-{uuid.uuid4().hex[:6]}")
            raise AssertionError("an unknown group was found")
        except urllib.error.HTTPError as e:
            assert e.code == 404


def test_a_group_is_listed_once_by_every_node(cluster):
    topic = f"listed-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.node(1), topic, 3, cluster)
    produce(cluster.node(1).bootstrap, topic, [f"v{i}" for i in range(9)])
    groups = [f"lg-{topic}-{i}" for i in range(6)]
    for g in groups:
        consume_all(cluster.node(2).bootstrap, topic, g, 9)
    for n in cluster.nodes:
        wait_for(
            lambda n=n: {x["name"] for x in n.http_json("/api/v1/groups")["groups"]} >= set(groups),
            10,
            "every group listed",
        )
        names = [x["name"] for x in n.http_json("/api/v1/groups")["groups"]]
        assert all(names.count(g) == 1 for g in groups), names
        # A node alone lists only what it knows: together they list all.
    alone = [{x["name"] for x in n.http_json("/api/v1/groups?scope=node")["groups"]} for n in cluster.nodes]
    assert set().union(*alone) >= set(groups)
