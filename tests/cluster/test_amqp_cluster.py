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
