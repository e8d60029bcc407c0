"""RocketMQ 4.x remoting clients (rocketmq-client-cpp through
rocketmq-client-python) against the 3-node cluster: the name server on any
node lists every broker (`broker-<id>`) with the queues it leads, so
producers and push consumers talk to the right node for each queue.
"""

import json
import socket
import struct
import sys
import uuid
from collections import Counter
from pathlib import Path

from rocketmq.client import SendStatus
from conftest import wait_for
from test_kafka_cluster import consume_all, create_topic, leaders

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rocketmq_remoting"))

from rmq import Collector, message, producer  # noqa: E402


def route(namesrv, topic):
    """GET_ROUTEINFO_BY_TOPIC, raw, for failure reports."""
    host, port = namesrv.rsplit(":", 1)
    header = json.dumps({"code": 105, "flag": 0, "language": "JAVA", "opaque": 1, "version": 0,
                         "extFields": {"topic": topic}, "serializeTypeCurrentRPC": "JSON"}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">II", 4 + len(header), len(header)) + header)
        (n,) = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))
        data = s.recv(n, socket.MSG_WAITALL)
    hlen = struct.unpack(">I", data[:4])[0] & 0xFFFFFF
    return json.loads(data[4:4 + hlen]), data[4 + hlen:]


def test_remoting_clients_send_and_consume_on_every_broker(cluster):
    topic = f"rmq-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.node(1), topic, 6, cluster)
    assert Counter(leaders(cluster.node(1), topic).values()) == {1: 2, 2: 2, 3: 2}
    # Node 1's name server routes the topic to all three brokers.
    def brokers():
        header, body = route(cluster.node(1).namesrv, topic)
        return header["code"] == 0 and sorted(b["brokerName"] for b in json.loads(body)["brokerDatas"])

    wait_for(lambda: brokers() == ["broker-1", "broker-2", "broker-3"], 10, "the route on node 1")
    # The producer asks node 1's name server; its sends go to each broker.
    p = producer(cluster.node(1).namesrv, f"pg-{topic}")
    sent = []
    for i in range(60):
        try:
            r = p.send_sync(message(topic, b"m-%d" % i, keys=f"k{i}"))
        except Exception as e:
            raise AssertionError(f"{e}; route from node 1: {route(cluster.node(1).namesrv, topic)}") from e
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
