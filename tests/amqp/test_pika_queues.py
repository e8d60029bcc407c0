"""pika against `fjord serve`: queue arguments — dead-letter exchanges with
exact `x-death` headers (rejected, expired, maxlen, delivery_limit),
message TTL with no consumer, `x-max-length`/`x-max-length-bytes` overflow
policies, and the
delayed-message exchange."""

import time

import pika
import pytest
from kafka import KafkaProducer
from pika.exceptions import ChannelClosedByBroker, NackError

import urllib.request

import fjord_harness
from test_pika import drain


def dlx_pair(ch, unique, **extra):
    """A queue dead-lettering through the default exchange into a second queue."""
    dlq = unique("dlq")
    ch.queue_declare(dlq, durable=True)
    work = unique("work")
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    args.update(extra)
    ch.queue_declare(work, durable=True, arguments=args)
    return work, dlq


def death(props):
    (d,) = props.headers["x-death"][:1]
    return d


def test_rejected_messages_go_to_the_dead_letter_exchange_with_x_death(ch, unique):
    ch.confirm_delivery()
    dlx = unique("dlx")
    ch.exchange_declare(dlx, "fanout")
    dlq = unique("dlq")
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx)
    work = unique("work")
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", work, b"bad", pika.BasicProperties(headers={"order": "o-1"}))
    (m, _, _), = drain(ch, work, 1, ack=False)
    ch.basic_reject(m.delivery_tag, requeue=False)
    (dm, props, body), = drain(ch, dlq, 1)
    assert body == b"bad"
    assert dm.exchange == dlx and dm.routing_key == work
    d = death(props)
    assert (d["reason"], d["queue"], d["count"], d["exchange"], d["routing-keys"]) == ("rejected", work, 1, "", [work])
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.headers["x-first-death-queue"] == work
    assert props.headers["order"] == "o-1"
    # nack without requeue, multiple: the same.
    for i in range(2):
        ch.basic_publish("", work, f"n{i}".encode())
    got = drain(ch, work, 2, ack=False)
    ch.basic_nack(got[-1][0].delivery_tag, multiple=True, requeue=False)
    assert sorted(b for _, _, b in drain(ch, dlq, 2)) == [b"n0", b"n1"]


def test_expired_messages_are_dead_lettered_without_a_consumer(ch, unique):
    ch.confirm_delivery()
    work, dlq = dlx_pair(ch, unique, **{"x-message-ttl": 300})
    ch.basic_publish("", work, b"late", pika.BasicProperties(delivery_mode=2))
    # A per-message expiration on a queue with a dead-letter exchange too.
    other, dlq2 = dlx_pair(ch, unique)
    ch.basic_publish("", other, b"short-lived", pika.BasicProperties(expiration="200"))
    (_, props, body), = drain(ch, dlq, 1, timeout=15)
    assert body == b"late"
    d = death(props)
    assert (d["reason"], d["queue"], d["count"]) == ("expired", work, 1)
    (_, props2, body2), = drain(ch, dlq2, 1, timeout=15)
    assert body2 == b"short-lived"
    assert death(props2)["original-expiration"] == "200"
    assert props2.expiration is None
    assert drain(ch, work, 1, timeout=0.2) == []


def test_max_length_drop_head_dead_letters_the_oldest(ch, unique):
    ch.confirm_delivery()
    work, dlq = dlx_pair(ch, unique, **{"x-max-length": 2})
    for i in range(5):
        ch.basic_publish("", work, f"m{i}".encode())
    assert ch.queue_declare(work, passive=True).method.message_count == 2
    assert [b for _, _, b in drain(ch, work, 2)] == [b"m3", b"m4"]
    dropped = drain(ch, dlq, 3)
    assert sorted(b for _, _, b in dropped) == [b"m0", b"m1", b"m2"]
    assert {death(p)["reason"] for _, p, _ in dropped} == {"maxlen"}


@pytest.mark.fjord_only
def test_max_length_holds_for_records_written_by_other_protocols(fjord, ch, unique):
    """Records a Kafka producer writes to a drop-head queue's topic never
    pass an AMQP publisher's trim: the queue's node trims the queue back
    to its limit by itself (the same sweep finishes a publisher's trim
    that failed, e.g. during a failover)."""
    work, dlq = dlx_pair(ch, unique, **{"x-max-length": 2})
    kp = KafkaProducer(bootstrap_servers=fjord.bootstrap)
    for i in range(5):
        kp.send(work, value=f"k{i}".encode())
    kp.flush()
    kp.close()
    fjord_harness.wait_until(lambda: ch.queue_declare(work, passive=True).method.message_count == 2, 10,
                             message="the queue trimmed to its limit")
    assert [b for _, _, b in drain(ch, work, 2)] == [b"k3", b"k4"]
    dropped = drain(ch, dlq, 3)
    assert sorted(b for _, _, b in dropped) == [b"k0", b"k1", b"k2"]
    assert {death(p)["reason"] for _, p, _ in dropped} == {"maxlen"}


def test_max_length_reject_publish_nacks_and_reject_publish_dlx_dead_letters(ch, unique):
    ch.confirm_delivery()
    q = unique("full")
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.basic_publish("", q, b"first")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"second")
    assert [b for _, _, b in drain(ch, q, 1)] == [b"first"]
    work, dlq = dlx_pair(ch, unique, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    ch.basic_publish("", work, b"kept")
    with pytest.raises(NackError):
        ch.basic_publish("", work, b"refused")
    (_, props, body), = drain(ch, dlq, 1)
    assert body == b"refused" and death(props)["reason"] == "maxlen"


def test_max_length_bytes_drop_head_counts_ready_body_bytes(ch, unique):
    ch.confirm_delivery()
    work, dlq = dlx_pair(ch, unique, **{"x-max-length-bytes": 10})
    for body in (b"aaaa", b"bbbb", b"cccc"):
        ch.basic_publish("", work, body)
    # 12 bytes ready: the head goes.
    assert ch.queue_declare(work, passive=True).method.message_count == 2
    (_, props, body), = drain(ch, dlq, 1)
    assert body == b"aaaa" and death(props)["reason"] == "maxlen"
    # A delivery awaiting its ack is not ready: it does not count.
    (m, _, held), = drain(ch, work, 1, ack=False)
    assert held == b"bbbb"
    ch.basic_publish("", work, b"dddd")
    assert ch.queue_declare(work, passive=True).method.message_count == 2
    # One message over the limit by itself pushes out everything ready, itself too.
    ch.basic_publish("", work, b"e" * 11)
    assert ch.queue_declare(work, passive=True).method.message_count == 0
    assert sorted(b for _, _, b in drain(ch, dlq, 3)) == [b"cccc", b"dddd", b"e" * 11]
    ch.basic_ack(m.delivery_tag)


def test_max_length_bytes_reject_publish_nacks_what_would_not_fit(ch, unique):
    ch.confirm_delivery()
    q = unique("bytes")
    ch.queue_declare(q, arguments={"x-max-length-bytes": 8, "x-overflow": "reject-publish"})
    ch.basic_publish("", q, b"12345")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"6789")
    ch.basic_publish("", q, b"678")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"9")
    assert [b for _, _, b in drain(ch, q, 2)] == [b"12345", b"678"]
    ch.basic_publish("", q, b"87654321")
    assert [b for _, _, b in drain(ch, q, 1)] == [b"87654321"]


def test_quorum_delivery_limit_dead_letters_after_too_many_returns(ch, unique):
    ch.confirm_delivery()
    work, dlq = dlx_pair(ch, unique, **{"x-queue-type": "quorum", "x-delivery-limit": 1})
    ch.basic_publish("", work, b"poison")
    for attempt in range(2):
        got = drain(ch, work, 1, ack=False)
        assert len(got) == 1, f"delivery {attempt + 1}: {ch.queue_declare(work, passive=True).method}"
        (m, _, _), = got
        assert m.redelivered == (attempt > 0)
        ch.basic_nack(m.delivery_tag, requeue=True)
    (_, props, body), = drain(ch, dlq, 1)
    assert body == b"poison" and death(props)["reason"] == "delivery_limit"


@pytest.mark.fjord_only
def test_delayed_message_exchange_holds_messages_for_x_delay(ch, unique):
    ch.confirm_delivery()
    x = unique("delayed")
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.exchange_declare(x, "x-delayed-message")
    assert e.value.reply_code == 406
    ch = ch.connection.channel()
    ch.confirm_delivery()
    ch.exchange_declare(x, "x-delayed-message", arguments={"x-delayed-type": "direct"})
    q = unique("q")
    ch.queue_declare(q)
    ch.queue_bind(q, x, "k")
    t0 = time.monotonic()
    ch.basic_publish(x, "k", b"later", pika.BasicProperties(headers={"x-delay": 1500}))
    ch.basic_publish(x, "k", b"now")
    assert [b for _, _, b in drain(ch, q, 1)] == [b"now"]
    (_, _, body), = drain(ch, q, 1, timeout=15)
    assert body == b"later"
    assert time.monotonic() - t0 >= 1.4


def metric(fjord, name, *labels):
    """The value of the sample of `name` carrying every `label="value"` given."""
    text = urllib.request.urlopen(f"http://{fjord.http}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] == name and all(lbl in head for lbl in labels):
            return float(value)
    return None


def test_queues_and_traffic_show_in_metrics_with_rabbitmq_names(fjord, conn, ch, unique):
    q = unique("metered")
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"x")
    (m, _, _), = drain(ch, q, 1, ack=False)
    ch.basic_consume(q, lambda *a: None)
    labels = (f'queue="{q}"', 'vhost="/"')
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ready = metric(fjord, "rabbitmq_queue_messages_ready", *labels)
        if ready is not None and metric(fjord, "rabbitmq_queue_consumers", *labels) == 1:
            break
        conn.process_data_events(time_limit=0.5)
    assert metric(fjord, "rabbitmq_queue_consumers", *labels) == 1
    assert metric(fjord, "rabbitmq_queue_messages_unacked", *labels) >= 1
    assert metric(fjord, "rabbitmq_global_messages_received_total") >= 3
    assert metric(fjord, "rabbitmq_global_messages_confirmed_total") >= 3
    assert metric(fjord, "rabbitmq_global_messages_delivered_total") >= 1
    assert metric(fjord, "fjord_connections", 'protocol="amqp"') >= 1


def test_priority_queue_delivers_higher_priorities_first(ch, unique):
    ch.confirm_delivery()
    q = unique("prio")
    ch.queue_declare(q, durable=True, arguments={"x-max-priority": 5})
    order = [(0, "low-1"), (5, "high-1"), (2, "mid-1"), (None, "none-1"), (9, "over-max"), (5, "high-2"), (2, "mid-2")]
    for prio, body in order:
        ch.basic_publish("", q, body.encode(), pika.BasicProperties(priority=prio))
    got = [b.decode() for _, _, b in drain(ch, q, len(order))]
    # Highest first; publish order within a priority; above x-max-priority counts as the max.
    assert got == ["high-1", "over-max", "high-2", "mid-1", "mid-2", "low-1", "none-1"]


def test_x_expires_deletes_an_unused_queue(conn, ch, unique):
    q = unique("expiring")
    ch.queue_declare(q, arguments={"x-expires": 1000})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        # A declare, passive too, renews the lease (as in RabbitMQ): look
        # less often than it lasts.
        time.sleep(2.5)
        probe = conn.channel()
        try:
            probe.queue_declare(q, passive=True)
            probe.close()
        except ChannelClosedByBroker as e:
            assert e.reply_code == 404
            return
    pytest.fail("the queue outlived its x-expires")


def test_single_active_consumer_takes_over_when_the_active_one_cancels(conn, ch, unique):
    ch.confirm_delivery()
    q = unique("sac")
    ch.queue_declare(q, arguments={"x-single-active-consumer": True})
    got = {"a": [], "b": []}
    c1, c2 = conn.channel(), conn.channel()
    tag_a = c1.basic_consume(q, lambda c, m, p, b: got["a"].append(b), auto_ack=True)
    c2.basic_consume(q, lambda c, m, p, b: got["b"].append(b), auto_ack=True)
    for i in range(4):
        ch.basic_publish("", q, f"m{i}".encode())
    deadline = time.monotonic() + 10
    while len(got["a"]) < 4 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    assert (len(got["a"]), got["b"]) == (4, [])
    c1.basic_cancel(tag_a)
    ch.basic_publish("", q, b"after")
    deadline = time.monotonic() + 10
    while not got["b"] and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    assert got["b"] == [b"after"]


def test_a_queue_declared_again_after_delete_starts_afresh(ch, unique):
    ch.confirm_delivery()
    q = unique("again")
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, f"old{i}".encode())
    assert len(drain(ch, q, 3)) == 3
    ch.queue_delete(q)
    ch.queue_declare(q)
    ch.basic_publish("", q, b"new")
    assert [b for _, _, b in drain(ch, q, 1)] == [b"new"]


def test_consumer_priorities(params, unique):
    """x-priority: the higher-priority consumer receives while it has
    prefetch room; the lower one only once it is full."""
    q = unique("prio")
    conn = pika.BlockingConnection(params)
    setup = conn.channel()
    setup.queue_declare(q)
    high, low = conn.channel(), conn.channel()
    high.basic_qos(prefetch_count=5)
    low.basic_qos(prefetch_count=100)
    got = {"high": [], "low": []}
    # Neither consumer acks: the high one is full after 5.
    high.basic_consume(q, lambda c, m, p, b: got["high"].append(b), arguments={"x-priority": 10})
    low.basic_consume(q, lambda c, m, p, b: got["low"].append(b))
    pub = pika.BlockingConnection(params)
    pch = pub.channel()
    pch.confirm_delivery()
    for i in range(5):
        pch.basic_publish("", q, f"a{i}".encode())
    deadline = time.monotonic() + 15
    while len(got["high"]) < 5 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert got == {"high": [f"a{i}".encode() for i in range(5)], "low": []}
    for i in range(5):
        pch.basic_publish("", q, f"b{i}".encode())
    while len(got["low"]) < 5 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert got["low"] == [f"b{i}".encode() for i in range(5)]
    assert len(got["high"]) == 5
    with pytest.raises(ChannelClosedByBroker) as e:
        conn.channel().basic_consume(q, lambda *a: None, arguments={"x-priority": "high"})
    assert e.value.reply_code == 406
    pub.close()
    conn.close()


def test_auto_delete_exchange_goes_with_its_last_binding(conn, ch, unique):
    x, q = unique("x"), unique("q")
    ch.exchange_declare(x, "direct", auto_delete=True)
    ch.queue_declare(q)
    ch.queue_bind(q, x, "a")
    ch.queue_bind(q, x, "b")
    ch.queue_unbind(q, x, "a")
    ch.exchange_declare(x, "direct", passive=True)  # one binding left
    ch.queue_unbind(q, x, "b")
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.exchange_declare(x, "direct", passive=True)
    assert e.value.reply_code == 404
