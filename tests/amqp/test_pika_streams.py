"""Stream queues (`x-queue-type: stream`) with unmodified pika: every
consumer reads the whole log from the offset its `x-stream-offset` picks,
acks only return credit, and a Kafka-written topic reads as a stream."""

import datetime
import json
import time
import urllib.request

import pika
import pytest
from kafka import KafkaProducer
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

STREAM = {"x-queue-type": "stream"}


def consume(conn, queue, n, offset=None, prefetch=5, timeout=15):
    """The first `n` deliveries of a new stream consumer: (offset header, body)."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=prefetch)
    args = {} if offset is None else {"x-stream-offset": offset}
    got = []
    deadline = time.monotonic() + timeout
    for method, props, body in ch.consume(queue, arguments=args, inactivity_timeout=1):
        if method is None:
            assert time.monotonic() < deadline, f"only {len(got)} of {n} deliveries: {got}"
            continue
        got.append((props.headers["x-stream-offset"], body))
        ch.basic_ack(method.delivery_tag)
        if len(got) == n:
            break
    ch.cancel()
    ch.close()
    return got


def publish(ch, queue, bodies):
    for b in bodies:
        ch.basic_publish("", queue, b, pika.BasicProperties(delivery_mode=2))


def test_stream_consumers_each_read_the_log_from_their_offset(conn, ch, unique):
    q = unique("stream")
    ch.queue_declare(q, durable=True, arguments={**STREAM, "x-max-age": "7D"})
    ch.confirm_delivery()
    publish(ch, q, [f"m{i}".encode() for i in range(10)])

    # More messages than the prefetch: acks return the credit.
    assert consume(conn, q, 10, "first") == [(i, f"m{i}".encode()) for i in range(10)]
    # Reading did not remove anything: the next consumer sees them too.
    assert consume(conn, q, 5, 5) == [(i, f"m{i}".encode()) for i in range(5, 10)]
    assert consume(conn, q, 1, "last") == [(9, b"m9")]

    # `next` (the default) waits for what is published after it starts.
    waiting = conn.channel()
    waiting.basic_qos(prefetch_count=10)
    got = []
    waiting.basic_consume(q, lambda c, m, p, b: (got.append(b), c.basic_ack(m.delivery_tag)))
    publish(ch, q, [b"later"])
    deadline = time.monotonic() + 15
    while not got and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    assert got == [b"later"]
    waiting.close()

    # A timestamp picks the first message stored at or after it.
    time.sleep(1.1)
    since = datetime.datetime.now(tz=datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=1)
    time.sleep(1.2)
    publish(ch, q, [b"after-ts"])
    assert consume(conn, q, 1, since) == [(11, b"after-ts")]



def test_kafka_topic_read_as_a_stream(fjord, conn, ch, unique):
    topic = unique("kstream")
    kp = KafkaProducer(bootstrap_servers=fjord.bootstrap)
    for i in range(3):
        kp.send(topic, value=f"k{i}".encode()).get(timeout=30)
    kp.close()
    ch.queue_declare(topic, durable=True, arguments=STREAM)
    assert [b for _, b in consume(conn, topic, 3, "first")] == [b"k0", b"k1", b"k2"]
    # A new stream's retention is its topic's.
    q = unique("aged")
    ch.queue_declare(q, durable=True, arguments={**STREAM, "x-max-age": "7D"})
    detail = json.load(urllib.request.urlopen(f"http://{fjord.http}/api/v1/topics/{q}", timeout=10))
    assert detail["config"]["retention.ms"] == str(7 * 86400 * 1000)
    # The stream did not consume the topic's messages away from its other readers.
    assert [b for _, b in consume(conn, topic, 3, 0)] == [b"k0", b"k1", b"k2"]


def test_stream_rules_as_rabbitmq(params, conn, ch, unique):
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare(unique("transient"), durable=False, arguments=STREAM)
    assert e.value.reply_code == 406
    ch = conn.channel()
    q = unique("stream")
    ch.queue_declare(q, durable=True, arguments=STREAM)
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_consume(q, lambda *a: None, auto_ack=True, arguments={"x-stream-offset": "first"})
    assert e.value.reply_code == 406
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_consume(q, lambda *a: None, arguments={"x-stream-offset": "first"})
    assert e.value.reply_code == 406, "no prefetch"
    # basic.get is not a stream operation (540 closes the connection).
    other = pika.BlockingConnection(params)
    with pytest.raises(ConnectionClosedByBroker) as e:
        other.channel().basic_get(q)
    assert e.value.reply_code == 540
