"""RocketMQ 4.x remoting clients (rocketmq-client-cpp through
rocketmq-client-python) against the 3-node cluster: the name server on any
node lists every broker (`broker-<id>`) with the queues it leads, so
producers and push consumers talk to the right node for each queue.
"""

import sys
import uuid
from collections import Counter
from pathlib import Path

from rocketmq.client import SendStatus
from test_kafka_cluster import consume_all, create_topic, leaders

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rocketmq_remoting"))

from rmq import Collector, message, producer  # noqa: E402


def test_remoting_clients_send_and_consume_on_every_broker(cluster):
    topic = f"rmq-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.node(1), topic, 6, cluster)
    assert Counter(leaders(cluster.node(1), topic).values()) == {1: 2, 2: 2, 3: 2}
    # The producer asks node 1's name server; its sends go to each broker.
    p = producer(cluster.node(1).namesrv, f"pg-{topic}")
    sent = []
    for i in range(60):
        r = p.send_sync(message(topic, b"m-%d" % i, keys=f"k{i}"))
        assert r.status == SendStatus.OK, r
        sent.append(f"k{i}")
    p.shutdown()
    # Every partition got some: the producer used all three brokers.
    kafka_seen = consume_all(cluster.node(3).bootstrap, topic, f"kafka-{topic}", len(sent))
    assert sum(kafka_seen.values()) == 60
    # A push consumer asking node 2's name server gets all of them once.
    c = Collector(cluster.node(2).namesrv, f"cg-{topic}", topic)
    try:
        got = c.wait_for(60, timeout=60)
    finally:
        c.stop()
    assert Counter(r["keys"] for r in got) == Counter(sent)
    # Queue ids are per broker: two queues on each.
    assert {r["queue_id"] for r in got} == {0, 1}
