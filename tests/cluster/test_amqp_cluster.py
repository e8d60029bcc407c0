"""pika (AMQP 0-9-1) against the 3-node cluster: a queue is led by the node
its declaring client is connected to (RabbitMQ's default client-local
queue locator), so that client's publishes with confirms and consumes
stay on its node; Kafka clients see the queue's topic led there.
"""

import uuid

import pika
from conftest import wait_for
from test_kafka_cluster import leaders


def test_a_queue_lives_on_the_node_its_client_declared_it_on(cluster):
    for node_id in (2, 3):
        node = cluster.node(node_id)
        host, port = node.amqp
        queue = f"q-{uuid.uuid4().hex[:8]}"
        conn = pika.BlockingConnection(pika.ConnectionParameters(host, port, credentials=pika.PlainCredentials("guest", "guest")))
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare(queue, durable=True)
            for i in range(20):
                ch.basic_publish("", queue, b"m%d" % i, pika.BasicProperties(delivery_mode=2), mandatory=True)
            got = []
            for method, _, body in ch.consume(queue, inactivity_timeout=5):
                if method is None:
                    break
                got.append(body)
                ch.basic_ack(method.delivery_tag)
                if len(got) == 20:
                    break
            ch.cancel()
        finally:
            conn.close()
        assert got == [b"m%d" % i for i in range(20)]
        # Every node's metadata places the queue's topic on that node.
        for n in cluster.nodes:
            wait_for(lambda: set(leaders(n, queue).values()) == {node_id}, 10, f"{queue} led by node {node_id}")


def test_a_queue_on_another_node_is_refused_with_where_it_lives(cluster):
    """Until queues are reachable from every node, a client on another node
    gets 404 naming the queue's node (as RabbitMQ when a queue's home node
    is out of reach), not an empty queue that looks usable."""
    queue = f"q-{uuid.uuid4().hex[:8]}"

    def connect(node_id):
        host, port = cluster.node(node_id).amqp
        return pika.BlockingConnection(pika.ConnectionParameters(host, port, credentials=pika.PlainCredentials("guest", "guest")))

    home = connect(2)
    try:
        ch = home.channel()
        ch.confirm_delivery()
        ch.queue_declare(queue, durable=True)
        ch.basic_publish("", queue, b"kept", pika.BasicProperties(delivery_mode=2), mandatory=True)
        for n in cluster.nodes:
            wait_for(lambda n=n: set(leaders(n, queue).values()) == {2}, 10, f"{queue} led by node 2")
        other = connect(1)
        try:
            attempts = [
                lambda c: c.queue_declare(queue, passive=True),
                lambda c: c.queue_declare(queue, durable=True),
                lambda c: c.basic_get(queue),
                lambda c: c.queue_purge(queue),
                lambda c: c.queue_bind(queue, "amq.direct", routing_key="k"),
            ]
            for attempt in attempts:
                c = other.channel()
                try:
                    attempt(c)
                    raise AssertionError(f"node 1 served {queue}, which lives on node 2")
                except pika.exceptions.ChannelClosedByBroker as e:
                    assert e.reply_code == 404 and "node 2" in e.reply_text, e
        finally:
            other.close()
        # Its home node still has the message.
        method, _, body = ch.basic_get(queue, auto_ack=True)
        assert body == b"kept"
    finally:
        home.close()
