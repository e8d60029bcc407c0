"""RocketMQ 5.x gRPC clients (PyPI rocketmq-python-client 5.1.2) against a
real `fjord serve`."""

import threading
import urllib.error
import time

import pytest
from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, FilterExpression, Message, MessageListener,
                      Producer, PushConsumer, SimpleConsumer, TransactionChecker, TransactionResolution)

from rocketmq.grpc_protocol import FilterType

from fjord_harness import wait_until
from remoting import update_sub_group


def config(endpoint):
    return ClientConfiguration(endpoint, Credentials())


def message(topic, body, tag=None, keys=None, group=None, props=None, deliver_at_s=None):
    m = Message()
    m.topic = topic
    m.body = body
    if tag:
        m.tag = tag
    if keys:
        m.keys = keys
    if group:
        m.message_group = group
    for k, v in (props or {}).items():
        m.add_property(k, v)
    if deliver_at_s:
        # rocketmq-python-client 5.1.2 puts this value into the protobuf
        # `seconds` field as it is: epoch seconds.
        m.delivery_timestamp = deliver_at_s
    return m


@pytest.fixture
def producer(endpoint):
    made = []

    def make(*topics, checker=None):
        p = Producer(config(endpoint), tuple(topics), checker) if checker else Producer(config(endpoint), tuple(topics))
        p.startup()
        made.append(p)
        return p

    yield make
    for p in made:
        p.shutdown()


def receive_all(consumer, want, timeout=30, invisible=15, ack=True):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        for m in consumer.receive(16, invisible):
            got.append(m)
            if ack:
                consumer.ack(m)
    return got


def test_send_and_receive_with_tag_filter_keys_and_properties(endpoint, producer, unique):
    topic = unique("topic")
    p = producer(topic)
    ids = {}
    for i in range(6):
        r = p.send(message(topic, b"m%d" % i, tag="TagA" if i % 2 == 0 else "TagB", keys=f"key-{i}", props={"n": str(i)}))
        ids[b"m%d" % i] = r.message_id
    c = SimpleConsumer(config(endpoint), unique("cg"), {topic: FilterExpression("TagA")}, await_duration=3)
    c.startup()
    try:
        got = receive_all(c, 3)
        time.sleep(0.5)
        got += receive_all(c, 1, timeout=4)
    finally:
        c.shutdown()
    assert sorted(m.body for m in got) == [b"m0", b"m2", b"m4"]
    for m in got:
        i = int(m.body[1:])
        assert m.tag == "TagA" and m.keys == {f"key-{i}"} and m.properties == {"n": str(i)}
        assert m.message_id == ids[m.body], "the consumer sees the producer's message id"
        assert m.delivery_attempt == 1


def test_clients_given_several_endpoints_send_and_receive(endpoint, unique):
    """Endpoints as a cluster is configured ("a:8081;b:8081"): the client
    dials the gRPC target `ipv4:a:8081,b:8081` and sends its path as each
    request's :authority, which h2 refuses as malformed; the gateway drops
    it (see crates/rocketmq-grpc/src/authority.rs). The second address is
    another loopback one nothing listens on: the channel connects to the
    first."""
    host, port = endpoint.rsplit(":", 1)
    both = f"{endpoint};127.0.0.2:{port}"
    assert host == "127.0.0.1"
    topic = unique("topic")
    p = Producer(config(both), (topic,))
    p.startup()
    try:
        sent = {p.send(message(topic, b"e%d" % i)).message_id for i in range(3)}
    finally:
        p.shutdown()
    c = SimpleConsumer(config(both), unique("cg"), {topic: FilterExpression("*")}, await_duration=3)
    c.startup()
    try:
        got = receive_all(c, 3)
    finally:
        c.shutdown()
    assert {m.message_id for m in got} == sent


def test_sql92_filter(endpoint, producer, unique):
    topic = unique("topic")
    p = producer(topic)
    for region in ("eu", "us", "eu"):
        p.send(message(topic, region.encode(), tag="T", props={"region": region}))
    c = SimpleConsumer(config(endpoint), unique("cg"), {topic: FilterExpression("region = 'eu'", FilterType.SQL)},
                       await_duration=3)
    c.startup()
    try:
        got = receive_all(c, 2)
        got += receive_all(c, 1, timeout=4)
    finally:
        c.shutdown()
    assert [m.body for m in got] == [b"eu", b"eu"]


def test_invisibility_expiry_redelivers_and_change_invisible_duration(endpoint, producer, unique):
    topic = unique("topic")
    producer(topic).send(message(topic, b"once"))
    c = SimpleConsumer(config(endpoint), unique("cg"), {topic: FilterExpression()}, await_duration=2)
    c.startup()
    try:
        first = receive_all(c, 1, invisible=2, ack=False)
        assert len(first) == 1 and first[0].delivery_attempt == 1
        t0 = time.monotonic()
        again = receive_all(c, 1, timeout=15, invisible=2, ack=False)
        assert again and again[0].body == b"once" and again[0].delivery_attempt == 2
        assert time.monotonic() - t0 >= 1.0, "redelivered only after the invisibility ended"
        # Extend it, then ack with the new handle: nothing comes back.
        c.change_invisible_duration(again[0], 10)
        c.ack(again[0])
        assert receive_all(c, 1, timeout=5, ack=False) == []
    finally:
        c.shutdown()


def test_fifo_messages_come_one_group_message_at_a_time(fjord, endpoint, producer, unique):
    topic, group = unique("topic"), unique("cg")
    update_sub_group(fjord.namesrv, group, orderly=True)
    p = producer(topic)
    for seq in range(5):
        for g in ("A", "B"):
            p.send(message(topic, f"{g}{seq}".encode(), group=f"order-{g}"))
    c = SimpleConsumer(config(endpoint), group, {topic: FilterExpression()}, await_duration=2)
    c.startup()
    seen = {"A": [], "B": []}
    try:
        deadline = time.monotonic() + 40
        while sum(map(len, seen.values())) < 10 and time.monotonic() < deadline:
            batch = c.receive(16, 10)
            groups = [m.message_group for m in batch]
            assert len(groups) == len(set(groups)), f"two messages of one group in flight at once: {groups}"
            for m in batch:
                seen[m.body.decode()[0]].append(int(m.body[1:]))
                c.ack(m)
    finally:
        c.shutdown()
    assert seen == {"A": list(range(5)), "B": list(range(5))}


def test_delayed_message_by_delivery_timestamp(endpoint, producer, unique):
    topic = unique("topic")
    p = producer(topic)
    c = SimpleConsumer(config(endpoint), unique("cg"), {topic: FilterExpression()}, await_duration=5)
    c.startup()
    try:
        at = int(time.time()) + 4
        p.send(message(topic, b"later", deliver_at_s=at))
        got = receive_all(c, 1, timeout=15)
        arrived = time.time()
    finally:
        c.shutdown()
    assert got and got[0].body == b"later"
    assert at - 0.05 <= arrived <= at + 1.5, f"delivered at {arrived:.2f}, due at {at}"


class Checker(TransactionChecker):
    def __init__(self):
        self.checked = []

    def check(self, message):
        self.checked.append(message.body)
        return TransactionResolution.COMMIT


def test_transactions_commit_rollback_and_orphan_check(endpoint, producer, unique):
    topic = unique("topic")
    checker = Checker()
    p = producer(topic, checker=checker)
    for body, outcome in ((b"commit", "commit"), (b"rollback", "rollback"), (b"orphan", None)):
        tx = p.begin_transaction()
        p.send(message(topic, body), tx)
        if outcome == "commit":
            tx.commit()
        elif outcome == "rollback":
            tx.rollback()
    c = SimpleConsumer(config(endpoint), unique("cg"), {topic: FilterExpression()}, await_duration=5)
    c.startup()
    try:
        got = receive_all(c, 2, timeout=30)
        got += receive_all(c, 1, timeout=3)
    finally:
        c.shutdown()
    assert sorted(m.body for m in got) == [b"commit", b"orphan"]
    assert b"orphan" in checker.checked, "the orphaned transaction was checked back through Telemetry"


class Listener(MessageListener):
    def __init__(self, fail_times=0):
        self.lock = threading.Lock()
        self.seen = []
        self.fail_times = fail_times

    def consume(self, message):
        with self.lock:
            self.seen.append((message.body, message.delivery_attempt, time.monotonic()))
            return ConsumeResult.FAILURE if message.delivery_attempt <= self.fail_times else ConsumeResult.SUCCESS


def connected_groups(fjord) -> set:
    return {g["name"] for g in fjord.http_json("/api/v1/groups")["groups"] if g["members"]}


def test_push_consumer_receives_everything(fjord, endpoint, producer, unique):
    topic, group = unique("topic"), unique("cg")
    p = producer(topic)
    for i in range(20):
        p.send(message(topic, b"p%d" % i))
    listener = Listener()
    pc = PushConsumer(config(endpoint), group, listener, {topic: FilterExpression()})
    pc.startup()
    try:
        wait_until(lambda: len(listener.seen) >= 20, 30, message="20 messages pushed")
        # Operators see the connected consumer through the admin API.
        g = fjord.http_json(f"/api/v1/groups/{group}")
        assert (g["protocol"], len(g["members"])) == ("rocketmq", 1), g
        assert g["members"][0]["topics"] == [topic], g
    finally:
        pc.shutdown()
    wait_until(lambda: group not in connected_groups(fjord), 15, message="the member to leave")

    # Acknowledged pops become the group's committed progress: no lag left.
    def caught_up():
        try:
            g = fjord.http_json(f"/api/v1/groups/{group}")
        except urllib.error.HTTPError as e:  # no progress committed yet: unknown group
            if e.code == 404:
                return False
            raise
        offsets = [o for o in g["offsets"] if o["topic"] == topic]
        return sum(o["log_end_offset"] for o in offsets) == 20 and all(o["lag"] == 0 for o in offsets)

    wait_until(caught_up, 15, message="the group's progress to reach the end of the topic")
    assert sorted(b for b, _, _ in listener.seen) == sorted(b"p%d" % i for i in range(20))


def test_push_consumer_retries_then_dead_letters(fjord, endpoint, producer, unique):
    topic, group = unique("topic"), unique("cg")
    update_sub_group(fjord.namesrv, group, retry_max_times=1)  # two deliveries in all
    p = producer(topic)
    listener = Listener(fail_times=99)
    pc = PushConsumer(config(endpoint), group, listener, {topic: FilterExpression()})
    pc.startup()
    try:
        p.send(message(topic, b"poison", keys="poison-1"))
        wait_until(lambda: len(listener.seen) >= 2, 40, message="a retry")
        # The DLQ is readable like any topic.
        dlq = SimpleConsumer(config(endpoint), unique("dlq-reader"), {f"%DLQ%{group}": FilterExpression()},
                             await_duration=3)
        dlq.startup()
        try:
            dead = receive_all(dlq, 1, timeout=30)
        finally:
            dlq.shutdown()
    finally:
        pc.shutdown()
    attempts = [a for b, a, _ in listener.seen if b == b"poison"]
    assert attempts[:2] == [1, 2] and len(attempts) == 2, attempts
    assert dead and dead[0].body == b"poison" and dead[0].keys == {"poison-1"}
