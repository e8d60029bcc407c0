"""RocketMQ 4.x remoting clients (rocketmq-client-cpp via rocketmq-client-python)
against a real `fjord serve`: name server on one port, broker on another."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from rocketmq.client import ConsumeStatus, MessageModel, SendStatus, TransactionMQProducer, TransactionStatus

from fjord_harness import wait_until
from rmq import Collector, message, producer

HERE = Path(__file__).resolve().parent


def test_send_and_consume_with_tags_keys_and_properties(fjord, namesrv, unique):
    topic, group = unique("topic"), unique("cg")
    p = producer(namesrv, unique("pg"))
    sent = {}
    for i in range(10):
        tag = "TagA" if i % 2 == 0 else "TagB"
        r = p.send_sync(message(topic, b"body-%d" % i, tags=tag, keys=f"order-{i}", props={"color": f"c{i}"}))
        assert r.status == SendStatus.OK
        assert len(r.msg_id) == 32
        sent[f"order-{i}"] = (tag, r.msg_id)
    p.shutdown()

    seen_props = {}

    def record(rec):
        seen_props[rec["keys"]] = rec["props"].get_property("color").decode()
        return ConsumeStatus.CONSUME_SUCCESS

    c = Collector(namesrv, group, topic, "TagA", on_message=record)
    got = c.wait_for(5)
    time.sleep(1.5)  # nothing else may arrive: TagB is filtered by the broker
    got = c.snapshot()
    # Operators see the connected consumer (admin API), and see it leave.
    g = fjord.http_json(f"/api/v1/groups/{group}")
    assert (g["protocol"], g["state"], len(g["members"])) == ("rocketmq", "Stable", 1), g
    assert topic in g["members"][0]["topics"] and g["members"][0]["client_host"], g
    c.stop()
    wait_until(lambda: not fjord.http_json(f"/api/v1/groups/{group}")["members"], 15, message="the member to leave")
    assert sorted(r["keys"] for r in got) == [f"order-{i}" for i in range(0, 10, 2)]
    for r in got:
        i = int(r["keys"].split("-")[1])
        assert r["tags"] == "TagA"
        assert r["body"] == b"body-%d" % i
        assert r["id"] == sent[r["keys"]][1], "the consumer sees the producer's message id"
        assert r["topic"] == topic
        assert seen_props[r["keys"]] == f"c{i}"


def test_ordered_messages_stay_in_order_per_sharding_key(namesrv, unique):
    topic, group = unique("topic"), unique("cg")
    p = producer(namesrv, unique("pg"))
    keys = [f"order-{k}" for k in range(4)]
    queues = {}
    for seq in range(15):
        for k in keys:
            r = p.send_orderly_with_sharding_key(message(topic, f"{k}:{seq}".encode(), tags="T"), k)
            assert r.status == SendStatus.OK
    p.shutdown()

    c = Collector(namesrv, group, topic, "*", orderly=True)
    got = c.wait_for(60)
    c.stop()
    per_key = {}
    for r in got:
        k, seq = r["body"].decode().split(":")
        per_key.setdefault(k, []).append(int(seq))
        queues.setdefault(k, set()).add(r["queue_id"])
    for k in keys:
        assert per_key[k] == list(range(15)), f"{k} out of order: {per_key[k]}"
        assert len(queues[k]) == 1, f"{k} spread over queues {queues[k]}"


def run_consumer(namesrv, group, topic, out: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "consumer_proc.py"), namesrv, group, topic, str(out), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def lines(path: Path) -> list[str]:
    try:
        return [l for l in path.read_text().splitlines() if l]
    except FileNotFoundError:
        return []


def test_order_holds_across_a_consumer_crash_and_restart(namesrv, unique, tmp_path):
    topic, group = unique("topic"), unique("cg")
    p = producer(namesrv, unique("pg"))
    keys = [f"k{i}" for i in range(3)]
    total = 40
    for seq in range(total):
        for k in keys:
            p.send_orderly_with_sharding_key(message(topic, f"{k}:{seq}".encode()), k)
    p.shutdown()

    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    # Slow consumption so the crash lands in the middle.
    proc = run_consumer(namesrv, group, topic, first, "orderly", "0.05")
    wait_until(lambda: len(lines(first)) >= 30, 60, message="first consumer progress")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = run_consumer(namesrv, group, topic, second, "orderly", "0")
    try:
        def done():
            seen = {l.split(":")[0] + ":" + l.split(":")[1] for l in lines(first) + lines(second)}
            return len(seen) >= total * len(keys)

        wait_until(done, 90, message="every message consumed after the restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    for k in keys:
        a = [int(l.split(":")[1]) for l in lines(first) if l.startswith(k + ":")]
        b = [int(l.split(":")[1]) for l in lines(second) if l.startswith(k + ":")]
        assert a == list(range(len(a))), f"{k} before the crash: {a}"
        # The restarted consumer resumes at or before where the first one
        # stopped (redelivery of uncommitted messages) and goes on in order.
        assert b, f"{k}: nothing after the restart"
        assert b[0] <= len(a), f"{k} skipped messages: first run ended at {len(a)}, second began at {b[0]}"
        assert b == list(range(b[0], total)), f"{k} after the restart: {b}"


def test_broadcasting_delivers_every_message_to_every_instance(namesrv, unique):
    topic, group = unique("topic"), unique("cg")
    p = producer(namesrv, unique("pg"))
    p.send_sync(message(topic, b"warm-up", tags="Skip"))
    a = Collector(namesrv, group, topic, "TagA", model=MessageModel.BROADCASTING, instance="a")
    b = Collector(namesrv, group, topic, "TagA", model=MessageModel.BROADCASTING, instance="b")
    time.sleep(3)  # both started and positioned (broadcasting starts at the end)
    for i in range(6):
        p.send_sync(message(topic, b"b-%d" % i, tags="TagA" if i % 3 else "TagB"))
    p.shutdown()
    want = sorted(b"b-%d" % i for i in range(6) if i % 3)
    ga = a.wait_for(len(want))
    gb = b.wait_for(len(want))
    time.sleep(1)
    a.stop()
    b.stop()
    assert sorted(r["body"] for r in a.snapshot()) == want
    assert sorted(r["body"] for r in b.snapshot()) == want
    assert ga and gb


def test_transactions_commit_rollback_and_check_back(namesrv, unique):
    topic, group = unique("topic"), unique("cg")
    checked = []

    def checker(msg):
        checked.append(msg.body)
        return TransactionStatus.COMMIT

    def local(msg, _args):
        body = msg.body
        if body.startswith(b"commit"):
            return TransactionStatus.COMMIT
        if body.startswith(b"rollback"):
            return TransactionStatus.ROLLBACK
        return TransactionStatus.UNKNOWN

    tp = TransactionMQProducer(unique("txpg"), checker)
    tp.set_namesrv_addr(namesrv)
    tp.start()
    # Make the topic (and its route) exist before the transactional sends.
    warm = producer(namesrv, unique("pg"))
    warm.send_sync(message(topic, b"plain"))
    warm.shutdown()
    t0 = time.monotonic()
    for body in (b"commit-1", b"rollback-1", b"unknown-1"):
        r = tp.send_message_in_transaction(message(topic, body), local)
        assert r.status == SendStatus.OK
    c = Collector(namesrv, group, topic)
    got = c.wait_for(3, timeout=40)
    time.sleep(1)
    got = c.snapshot()
    c.stop()
    tp.shutdown()
    bodies = sorted(r["body"] for r in got)
    assert bodies == [b"commit-1", b"plain", b"unknown-1"], bodies
    assert b"unknown-1" in checked, "the open transaction was checked back with the producer"
    unknown_at = next(r["at"] for r in got if r["body"] == b"unknown-1")
    assert unknown_at - t0 >= 5.5, "an open transaction stays invisible until it is checked back (6 s)"


def test_delay_level_3_is_delivered_after_ten_seconds(namesrv, unique):
    topic, group = unique("topic"), unique("cg")
    p = producer(namesrv, unique("pg"))
    p.send_sync(message(topic, b"now"))
    c = Collector(namesrv, group, topic)
    c.wait_for(1)
    m = message(topic, b"later")
    m.set_delay_time_level(3)
    sent = time.monotonic()
    assert p.send_sync(m).status == SendStatus.OK
    at_ms = int(time.time() * 1000) + 4000
    sent_at = time.monotonic()
    p.send_sync(message(topic, b"at-time", props={"__STARTDELIVERTIME": str(at_ms)}))
    got = c.wait_for(3, timeout=20)
    c.stop()
    p.shutdown()
    later = next(r for r in got if r["body"] == b"later")
    timed = next(r for r in got if r["body"] == b"at-time")
    assert 9.9 <= later["at"] - sent <= 11.0, f"delay level 3 delivered after {later['at'] - sent:.2f}s"
    assert 3.9 <= timed["at"] - sent_at <= 5.0, f"timed message delivered after {timed['at'] - sent_at:.2f}s"


def test_reconsume_later_redelivers_through_the_retry_topic(namesrv, unique):
    topic, group = unique("topic"), unique("cg")
    p = producer(namesrv, unique("pg"))
    attempts = []

    def fail_once(rec):
        attempts.append((rec["reconsume_times"], rec["at"]))
        return ConsumeStatus.RECONSUME_LATER if rec["reconsume_times"] == 0 else ConsumeStatus.CONSUME_SUCCESS

    # The topic must exist before the consumer starts: clients look routes
    # up at start and then only every 30 s.
    p.send_sync(message(topic, b"warm-up", tags="Other"))
    c = Collector(namesrv, group, topic, "T", on_message=fail_once)
    time.sleep(2)
    r = p.send_sync(message(topic, b"flaky", tags="T", keys="k-flaky"))
    got = c.wait_for(2, timeout=30)
    c.stop()
    p.shutdown()
    assert [a for a, _ in attempts] == [0, 1]
    retry = got[1]
    assert retry["topic"] == topic, "a retried message shows its original topic"
    assert retry["body"] == b"flaky" and retry["keys"] == "k-flaky" and retry["id"] == r.msg_id
    assert attempts[1][1] - attempts[0][1] >= 9.5, "first retry waits RocketMQ's 10 s back-off"


def test_rocketmq_and_kafka_clients_share_topics(fjord, namesrv, unique):
    topic = unique("topic")
    p = producer(namesrv, unique("pg"))
    p.send_sync(message(topic, b"from-rocketmq", tags="TagX", keys="key-1 key-2", props={"color": "blue"}))
    p.shutdown()

    consumer = KafkaConsumer(topic, bootstrap_servers=fjord.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10000)
    records = []
    for rec in consumer:
        records.append(rec)
        break
    consumer.close()
    assert records and records[0].value == b"from-rocketmq"
    headers = [(k, v.decode()) for k, v in records[0].headers]
    assert ("fjord.tag", "TagX") in headers
    assert ("fjord.key", "key-1") in headers and ("fjord.key", "key-2") in headers
    assert ("color", "blue") in headers

    kp = KafkaProducer(bootstrap_servers=fjord.bootstrap)
    kp.send(topic, key=b"kafka-key", value=b"from-kafka", headers=[("color", b"green")]).get(10)
    kp.close()
    seen = {}

    def grab(rec):
        if rec["body"] == b"from-kafka":
            seen["color"] = rec["props"].get_property("color").decode()
        return ConsumeStatus.CONSUME_SUCCESS

    c = Collector(namesrv, unique("cg"), topic, on_message=grab)
    got = c.wait_for(2)
    c.stop()
    from_kafka = next(r for r in got if r["body"] == b"from-kafka")
    assert from_kafka["keys"] == "kafka-key", "a Kafka record key is the RocketMQ message key"
    assert seen["color"] == "green", "Kafka headers are RocketMQ properties"
