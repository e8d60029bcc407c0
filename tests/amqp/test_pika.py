"""pika (PyPI) against a real `fjord serve`: the article's programs as
written, work queues, every exchange type, confirms and returns, tx,
properties across protocols, restarts and hostile frames."""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

import pika
import pytest
from kafka import KafkaConsumer, KafkaProducer
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker, UnroutableError

import fjord_harness
from fjord_fixtures import stop_checked

HERE = Path(__file__).resolve().parent


def drain(ch, queue, n, timeout=15.0, ack=True):
    """basic_get until n messages arrived (or the timeout)."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=ack)
        if method is None:
            time.sleep(0.05)
            continue
        got.append((method, props, body))
    return got


def consume(conn, ch, queue, n, timeout=15.0, auto_ack=True):
    got = []

    def on(c, method, props, body):
        got.append((method, props, body))
        if len(got) >= n:
            c.stop_consuming()

    tag = ch.basic_consume(queue, on, auto_ack=auto_ack)
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    if ch.is_open:
        ch.basic_cancel(tag)
    return got


# -- the article --------------------------------------------------------------


@pytest.mark.fjord_only
def test_the_articles_producer_and_consumer_run_as_written():
    """tests/amqp/seed/*.py are the article's code blocks byte for byte:
    they connect to localhost:5672 with pika's defaults."""
    if not fjord_harness.port_is_free(5672):
        pytest.skip("port 5672 is taken on this machine")
    with tempfile.TemporaryDirectory(prefix="fjord-seed-") as d:
        server = fjord_harness.FjordServer(Path(d) / "data", env={"FJORD_LISTENERS__AMQP__BIND": "127.0.0.1:5672"})
        server.start()
        consumer = None
        try:
            out = subprocess.run(
                [sys.executable, str(HERE / "seed" / "producer.py")], capture_output=True, timeout=60, text=True
            )
            assert out.returncode == 0, out.stderr
            consumer = subprocess.Popen(
                [sys.executable, "-u", str(HERE / "seed" / "consumer.py")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            line = consumer.stdout.readline()
            assert line.strip() == "Received b'Hello World!'", (line, consumer.stderr.read() if consumer.poll() else "")
            # The queue is the topic `hello`: a Kafka consumer reads the message too.
            kc = KafkaConsumer(
                "hello", bootstrap_servers=server.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=15000
            )
            records = [r for r in kc]
            kc.close()
            assert [r.value for r in records] == [b"Hello World!"]
            headers = dict(records[0].headers)
            assert headers["amqp.delivery-mode"] == b"2"
            assert headers["amqp.routing-key"] == b"hello"
        finally:
            if consumer is not None:
                consumer.kill()
                consumer.wait()
            stop_checked(server)


# -- work queues ----------------------------------------------------------------


def test_work_queue_with_prefetch_and_manual_ack(conn, ch, unique):
    q = unique("q")
    ch.queue_declare(q, durable=True)
    ch.confirm_delivery()
    for i in range(20):
        ch.basic_publish("", q, f"task-{i}".encode(), pika.BasicProperties(delivery_mode=2))
    ch.basic_qos(prefetch_count=1)
    seen = []

    def on(c, method, props, body):
        # With prefetch 1 nothing else arrives before this ack.
        assert len(seen) == 0 or seen[-1][1], "a second delivery before the first ack"
        seen.append([body, False])
        c.basic_ack(method.delivery_tag)
        seen[-1][1] = True
        if len(seen) == 20:
            c.stop_consuming()

    ch.basic_consume(q, on)
    ch.start_consuming()
    assert [b for b, _ in seen] == [f"task-{i}".encode() for i in range(20)]
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_unacked_messages_are_redelivered_when_the_consumer_dies(params, ch, unique):
    q = unique("q")
    ch.queue_declare(q, durable=True)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode())
    dying = pika.BlockingConnection(params)
    dch = dying.channel()
    got = consume(dying, dch, q, 3, auto_ack=False)
    assert [b for _, _, b in got] == [b"m0", b"m1", b"m2"]
    assert not any(m.redelivered for m, _, _ in got)
    dying.close()  # closes without acking: all three go back
    again = drain(ch, q, 3)
    assert sorted(b for _, _, b in again) == [b"m0", b"m1", b"m2"]
    assert all(m.redelivered for m, _, _ in again)


def test_nack_requeues_and_reject_drops(ch, unique):
    q = unique("q")
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    (m1, _, b1), (m2, _, b2) = drain(ch, q, 2, ack=False)
    ch.basic_nack(m1.delivery_tag, requeue=True)
    ch.basic_reject(m2.delivery_tag, requeue=False)
    (m3, _, b3), = drain(ch, q, 1, ack=False)
    assert (b3, m3.redelivered) == (b1, True)
    ch.basic_ack(m3.delivery_tag)
    assert drain(ch, q, 1, timeout=1.0) == []


def test_ack_of_an_unknown_tag_closes_the_channel_with_406(conn, ch, unique):
    q = unique("q")
    ch.queue_declare(q)
    ch.basic_ack(999)
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare(q, passive=True)
    assert e.value.reply_code == 406
    # The connection goes on.
    assert conn.channel().queue_declare(q, passive=True).method.queue == q


# -- exchanges ----------------------------------------------------------------


def bound_queue(ch, exchange, key="", arguments=None):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, exchange, routing_key=key, arguments=arguments)
    return q


def bodies(ch, q, n, timeout=5.0):
    return sorted(b for _, _, b in drain(ch, q, n, timeout=timeout))


def test_direct_fanout_and_topic_exchanges(ch, unique):
    ch.confirm_delivery()
    d, f, t = unique("direct"), unique("fanout"), unique("topic")
    ch.exchange_declare(d, "direct")
    ch.exchange_declare(f, "fanout")
    ch.exchange_declare(t, "topic")
    qd_err, qd_info = bound_queue(ch, d, "error"), bound_queue(ch, d, "info")
    qf1, qf2 = bound_queue(ch, f), bound_queue(ch, f)
    q_star, q_hash = bound_queue(ch, t, "*.orange.*"), bound_queue(ch, t, "lazy.#")
    ch.basic_publish(d, "error", b"e1")
    ch.basic_publish(d, "info", b"i1")
    ch.basic_publish(f, "whatever", b"f1")
    for key in ["quick.orange.rabbit", "lazy.orange.elephant", "lazy", "quick.brown.fox", "lazy.pink.rabbit"]:
        ch.basic_publish(t, key, key.encode())
    assert bodies(ch, qd_err, 1) == [b"e1"]
    assert bodies(ch, qd_info, 1) == [b"i1"]
    assert bodies(ch, qf1, 1) == [b"f1"] and bodies(ch, qf2, 1) == [b"f1"]
    assert bodies(ch, q_star, 2) == [b"lazy.orange.elephant", b"quick.orange.rabbit"]
    assert bodies(ch, q_hash, 3) == [b"lazy", b"lazy.orange.elephant", b"lazy.pink.rabbit"]
    # Nothing extra arrived.
    for q in [qd_err, qd_info, qf1, q_star, q_hash]:
        assert drain(ch, q, 1, timeout=0.3) == []


def test_headers_exchange_all_and_any(ch, unique):
    ch.confirm_delivery()
    x = unique("headers")
    ch.exchange_declare(x, "headers")
    q_all = bound_queue(ch, x, arguments={"x-match": "all", "format": "pdf", "type": "report"})
    q_any = bound_queue(ch, x, arguments={"x-match": "any", "format": "zip", "type": "report"})
    ch.basic_publish(x, "", b"pdf-report", pika.BasicProperties(headers={"format": "pdf", "type": "report"}))
    ch.basic_publish(x, "", b"zip-log", pika.BasicProperties(headers={"format": "zip", "type": "log"}))
    ch.basic_publish(x, "", b"none", pika.BasicProperties(headers={"format": "txt"}))
    assert bodies(ch, q_all, 1) == [b"pdf-report"]
    assert bodies(ch, q_any, 2) == [b"pdf-report", b"zip-log"]
    assert drain(ch, q_all, 1, timeout=0.3) == []


def test_exchange_to_exchange_bindings_and_alternate_exchange(ch, unique):
    ch.confirm_delivery()
    src, dst, alt = unique("src"), unique("dst"), unique("alt")
    ch.exchange_declare(alt, "fanout")
    ch.exchange_declare(src, "direct", arguments={"alternate-exchange": alt})
    ch.exchange_declare(dst, "fanout")
    ch.exchange_bind(dst, src, routing_key="k")
    q_dst, q_alt = bound_queue(ch, dst), bound_queue(ch, alt)
    ch.basic_publish(src, "k", b"via-binding")
    ch.basic_publish(src, "other", b"unrouted")
    assert bodies(ch, q_dst, 1) == [b"via-binding"]
    assert bodies(ch, q_alt, 1) == [b"unrouted"]
    ch.exchange_unbind(dst, src, routing_key="k")
    ch.basic_publish(src, "k", b"after-unbind")
    assert bodies(ch, q_alt, 1) == [b"after-unbind"]


def test_declare_errors_close_the_channel_not_the_connection(conn, unique):
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare(unique("missing"), passive=True)
    assert e.value.reply_code == 404
    ch = conn.channel()
    q = unique("q")
    ch.queue_declare(q, durable=True)
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare(q, durable=False)
    assert e.value.reply_code == 406
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_publish(unique("no-such-exchange"), "k", b"x")
        ch.queue_declare(q, passive=True)
    assert e.value.reply_code == 404
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.exchange_declare("amq.mine", "direct")
    assert e.value.reply_code == 403
    assert conn.channel().queue_declare(q, passive=True).method.queue == q


def test_queue_delete_purge_and_conditions(conn, ch, unique):
    q = unique("q")
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", q, b"x")
    assert ch.queue_declare(q, passive=True).method.message_count == 5
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_delete(q, if_empty=True)
    assert e.value.reply_code == 406
    ch = conn.channel()
    assert ch.queue_purge(q).method.message_count == 5
    assert drain(ch, q, 1, timeout=0.5) == []
    ch.queue_delete(q, if_empty=True)
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare(q, passive=True)
    assert e.value.reply_code == 404


def test_purge_keeps_unacked_deliveries(conn, ch, unique):
    """As RabbitMQ: queue.purge drops the ready messages only; a delivery
    awaiting its ack stays with its consumer and returns on a requeue."""
    q = unique("q")
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"taken")
    method, _, body = ch.basic_get(q, auto_ack=False)
    assert body == b"taken"
    for i in range(3):
        ch.basic_publish("", q, f"ready-{i}".encode())
    other = conn.channel()
    assert other.queue_purge(q).method.message_count == 3
    ch.basic_nack(method.delivery_tag, requeue=True)
    back = drain(other, q, 2, timeout=2)
    assert [b for _, _, b in back] == [b"taken"]


def test_exclusive_queues_belong_to_their_connection(params, conn, unique):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    assert q.startswith("amq.gen-")
    other = pika.BlockingConnection(params)
    try:
        och = other.channel()
        with pytest.raises(ChannelClosedByBroker) as e:
            och.basic_consume(q, lambda *a: None)
        assert e.value.reply_code == 405
    finally:
        other.close()
    conn.close()
    again = pika.BlockingConnection(params)
    try:
        with pytest.raises(ChannelClosedByBroker) as e:
            again.channel().queue_declare(q, passive=True)
        assert e.value.reply_code == 404
    finally:
        again.close()


def test_auto_delete_queue_goes_with_its_last_consumer(conn, unique):
    ch = conn.channel()
    q = unique("auto")
    ch.queue_declare(q, auto_delete=True)
    tag = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(tag)
    probe = conn.channel()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            probe.queue_declare(q, passive=True)
            time.sleep(0.1)
        except ChannelClosedByBroker as e:
            assert e.reply_code == 404
            return
    pytest.fail("the auto-delete queue outlived its consumer")


# -- confirms, returns, tx ------------------------------------------------------


def test_confirms_and_mandatory_returns(ch, unique):
    q = unique("q")
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"routed", mandatory=True)
    with pytest.raises(UnroutableError) as e:
        ch.basic_publish("", unique("nowhere"), b"lost", mandatory=True)
    assert e.value.messages[0].method.reply_code == 312
    assert e.value.messages[0].body == b"lost"
    assert bodies(ch, q, 1) == [b"routed"]


def test_tx_commit_and_rollback(ch, unique):
    q = unique("q")
    ch.queue_declare(q)
    ch.tx_select()
    ch.basic_publish("", q, b"rolled-back")
    ch.tx_rollback()
    ch.basic_publish("", q, b"committed")
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.tx_commit()
    assert bodies(ch, q, 1) == [b"committed"]
    assert drain(ch, q, 1, timeout=0.3) == []


# -- messages across protocols ------------------------------------------------


def test_properties_and_typed_headers_round_trip_and_reach_kafka(fjord, ch, unique):
    q = unique("q")
    ch.queue_declare(q)
    ch.confirm_delivery()
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        priority=3,
        correlation_id="corr-1",
        reply_to="replies",
        message_id="msg-1",
        timestamp=1_700_000_000,
        type="order.created",
        app_id="shop",
        headers={"tenant": "acme", "retries": 3, "flag": True, "nested": {"a": 1}},
    )
    ch.basic_publish("", q, b'{"id": 1}', props)
    (m, p, body), = drain(ch, q, 1)
    assert body == b'{"id": 1}'
    for field in ["content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
                  "message_id", "timestamp", "type", "app_id"]:
        assert getattr(p, field) == getattr(props, field), field
    assert p.headers == props.headers
    assert m.routing_key == q and m.exchange == ""
    kc = KafkaConsumer(q, bootstrap_servers=fjord.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=15000)
    (r,) = [r for r in kc]
    kc.close()
    h = dict(r.headers)
    assert r.value == b'{"id": 1}'
    assert h["tenant"] == b"acme" and h["retries"] == b"3"
    assert h["amqp.content-type"] == b"application/json" and h["amqp.reply-to"] == b"replies"


def test_kafka_records_are_consumed_from_the_topic_as_a_queue(fjord, conn, ch, unique):
    topic = unique("kafka")
    kp = KafkaProducer(bootstrap_servers=fjord.bootstrap)
    for i in range(3):
        kp.send(topic, key=b"k", value=f"from-kafka-{i}".encode(), headers=[("origin", b"kafka")])
    kp.flush()
    kp.close()
    # An existing topic is a queue of vhost "/" without being declared.
    assert ch.queue_declare(topic, passive=True).method.message_count == 3
    got = consume(conn, ch, topic, 3)
    assert [b for _, _, b in got] == [f"from-kafka-{i}".encode() for i in range(3)]
    assert got[0][1].headers == {"origin": "kafka"}
    assert got[0][0].routing_key == topic


# -- restarts -------------------------------------------------------------------


@pytest.mark.fjord_only
def test_durable_definitions_and_messages_survive_a_restart():
    with tempfile.TemporaryDirectory(prefix="fjord-amqp-restart-") as d:
        server = fjord_harness.FjordServer(Path(d) / "data").start()
        try:
            host, port = server.amqp
            c = pika.BlockingConnection(pika.ConnectionParameters(host, port))
            ch = c.channel()
            ch.exchange_declare("orders", "topic", durable=True)
            ch.queue_declare("durable-q", durable=True)
            ch.queue_declare("transient-q", durable=False)
            ch.queue_bind("durable-q", "orders", "order.*")
            ch.confirm_delivery()
            for i in range(4):
                ch.basic_publish("orders", "order.created", f"o{i}".encode(), pika.BasicProperties(delivery_mode=2))
            # Two delivered and left unacked when the broker goes down.
            held = drain(ch, "durable-q", 2, ack=False)
            assert len(held) == 2
            server.restart()
            host, port = server.amqp
            c = pika.BlockingConnection(pika.ConnectionParameters(host, port))
            ch = c.channel()
            ch.confirm_delivery()
            ch.basic_publish("orders", "order.paid", b"o4")
            got = drain(ch, "durable-q", 5)
            assert sorted(b for _, _, b in got) == [b"o0", b"o1", b"o2", b"o3", b"o4"]
            assert sum(m.redelivered for m, _, _ in got) == 2
            with pytest.raises(ChannelClosedByBroker) as e:
                ch.queue_declare("transient-q", passive=True)
            assert e.value.reply_code == 404
            c.close()
        finally:
            stop_checked(server)


# -- hostile input ----------------------------------------------------------------


def raw_connect(broker, heartbeat=0):
    """A socket past connection.open, speaking raw frames (as guest), to
    the Fjord fixture or a (host, port)."""
    addr = broker if isinstance(broker, tuple) else broker.amqp
    s = socket.create_connection(addr, timeout=10)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    read_frame(s)  # start
    resp = b"\x00guest\x00guest"
    args = struct.pack(">I", 0) + bytes([5]) + b"PLAIN" + struct.pack(">I", len(resp)) + resp + bytes([5]) + b"en_US"
    send_method(s, 0, 10, 11, args)
    read_frame(s)  # tune
    send_method(s, 0, 10, 31, struct.pack(">HIH", 2047, 131072, heartbeat))
    send_method(s, 0, 10, 40, bytes([1]) + b"/" + bytes([0]) + bytes([0]))
    assert read_frame(s)[2][:4] == struct.pack(">HH", 10, 41)
    send_method(s, 1, 20, 10, bytes([0]))
    assert read_frame(s)[2][:4] == struct.pack(">HH", 20, 11)
    return s


def send_method(s, channel, class_id, method_id, args):
    payload = struct.pack(">HH", class_id, method_id) + args
    s.sendall(struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce")


def read_frame(s):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    kind, channel, size = struct.unpack(">BHI", exact(7))
    payload = exact(size)
    assert exact(1) == b"\xce"
    return kind, channel, payload


def close_code(s):
    """Reads until connection.close; returns its reply code."""
    while True:
        kind, channel, payload = read_frame(s)
        if kind == 1 and payload[:4] == struct.pack(">HH", 10, 50):
            return struct.unpack(">H", payload[4:6])[0]


def test_a_client_that_misses_its_heartbeats_is_disconnected(amqp_addr):
    quiet, lively = raw_connect(amqp_addr, heartbeat=1), raw_connect(amqp_addr, heartbeat=1)
    start, closed_after = time.monotonic(), None
    quiet.settimeout(0.25)
    while closed_after is None and time.monotonic() - start < 10:
        lively.sendall(b"\x08\x00\x00\x00\x00\x00\x00\xce")
        try:
            if quiet.recv(4096) == b"":
                closed_after = time.monotonic() - start
        except socket.timeout:
            pass
        except ConnectionResetError:  # RabbitMQ resets it
            closed_after = time.monotonic() - start
    # Two missed heartbeats (of 1 s): closed after about 2 s, not before.
    assert closed_after is not None and 1.5 <= closed_after < 5, closed_after
    # The one that sent its heartbeats is still served.
    send_method(lively, 2, 20, 10, bytes([0]))
    while True:
        kind, channel, payload = read_frame(lively)
        if kind == 1:
            assert (channel, payload[:4]) == (2, struct.pack(">HH", 20, 11))
            break


def test_a_qos_prefetch_size_is_refused_with_540(amqp_addr):
    s = raw_connect(amqp_addr)
    send_method(s, 1, 60, 10, struct.pack(">IHB", 4096, 10, 0))
    assert close_code(s) == 540
    # A zero prefetch_size (what clients send) is fine.
    s = raw_connect(amqp_addr)
    send_method(s, 1, 60, 10, struct.pack(">IHB", 0, 10, 0))
    assert read_frame(s)[2][:4] == struct.pack(">HH", 60, 11)


def test_a_wrong_protocol_header_is_answered_with_ours(fjord):
    s = socket.create_connection(fjord.amqp, timeout=10)
    s.sendall(b"AMQP\x01\x01\x00\x0a")
    assert s.recv(8) == b"AMQP\x00\x00\x09\x01"
    assert s.recv(8) == b""


def test_hostile_frames_get_their_close_codes_and_others_are_served(fjord, ch, unique):
    q = unique("q")
    ch.queue_declare(q)
    # Arguments nested 1000 deep: a syntax error, not a stack overflow.
    table = b""
    for _ in range(1000):
        table = bytes([1]) + b"a" + b"F" + struct.pack(">I", len(table)) + table
    s = raw_connect(fjord)
    args = struct.pack(">H", 0) + bytes([1]) + b"q" + bytes([0]) + struct.pack(">I", len(table)) + table
    send_method(s, 1, 50, 10, args)
    assert close_code(s) == 502
    # An unknown class.
    s = raw_connect(fjord)
    send_method(s, 1, 99, 10, b"")
    assert close_code(s) == 540
    # A frame larger than frame_max, refused from its header.
    s = raw_connect(fjord)
    s.sendall(struct.pack(">BHI", 3, 1, 50_000_000))
    assert close_code(s) == 501
    # A body on a channel with no publish in progress.
    s = raw_connect(fjord)
    s.sendall(struct.pack(">BHI", 3, 1, 3) + b"abc\xce")
    assert close_code(s) == 505
    # A content header announcing more than max_message_size: the channel closes (406).
    s = raw_connect(fjord)
    send_method(s, 1, 60, 40, struct.pack(">H", 0) + bytes([0]) + bytes([len(q)]) + q.encode() + bytes([0]))
    s.sendall(struct.pack(">BHI", 2, 1, 14) + struct.pack(">HHQH", 60, 0, 1 << 40, 0) + b"\xce")
    while True:
        kind, channel, payload = read_frame(s)
        if payload[:4] == struct.pack(">HH", 20, 40):
            assert struct.unpack(">H", payload[4:6])[0] == 406
            break
    # The well-behaved client was served throughout.
    ch.confirm_delivery()
    ch.basic_publish("", q, b"still-here")
    assert bodies(ch, q, 1) == [b"still-here"]


@pytest.mark.fjord_only
def test_confirmed_and_acked_state_survives_kill_9():
    """Confirmed messages are never lost and acked ones never come back
    after SIGKILL; unacked ones are redelivered."""
    with tempfile.TemporaryDirectory(prefix="fjord-amqp-kill-") as d:
        server = fjord_harness.FjordServer(Path(d) / "data").start()
        try:
            c = pika.BlockingConnection(pika.ConnectionParameters(*server.amqp))
            ch = c.channel()
            ch.queue_declare("crash-q", durable=True)
            ch.confirm_delivery()
            for i in range(200):
                ch.basic_publish("", "crash-q", f"m{i:03}".encode(), pika.BasicProperties(delivery_mode=2))
            acked = drain(ch, "crash-q", 50, ack=False)
            for m, _, _ in acked[:30]:
                ch.basic_ack(m.delivery_tag)
            # basic.ack has no answer. The group's committed progress moves
            # past an offset only after its ack was journaled, so wait for it.
            def committed():
                # The AMQP group is listed once it has committed progress.
                try:
                    offsets = server.http_json("/api/v1/groups/fjord-amqp").get("offsets", [])
                except urllib.error.HTTPError as e:
                    if e.code == 404:
                        return 0
                    raise
                return max((o["committed_offset"] for o in offsets if o["topic"] == "crash-q"), default=0)

            fjord_harness.wait_until(lambda: committed() >= 30, timeout=15, message="acks committed")
            server.proc.kill()
            server.proc.wait()
            server.proc = None
            server.start()
            c = pika.BlockingConnection(pika.ConnectionParameters(*server.amqp))
            ch = c.channel()
            got = drain(ch, "crash-q", 170)
            bodies_after = sorted(b.decode() for _, _, b in got)
            assert bodies_after == [f"m{i:03}" for i in range(30, 200)]
            assert sum(m.redelivered for m, _, _ in got) == 20
            assert drain(ch, "crash-q", 1, timeout=0.5) == []
            c.close()
        finally:
            stop_checked(server)
