"""pika (AMQP 0-9-1) against the 3-node cluster: a queue is led by the node
its declaring client is connected to (RabbitMQ's default client-local
queue locator), so that client's publishes with confirms and consumes
stay on its node; Kafka clients see the queue's topic led there.
Definitions (virtual hosts, exchanges, queues, bindings) and users are the
cluster's: what one node declares every node routes with, and a publish
through any node reaches a queue on another.
"""

import json
import urllib.parse
import urllib.request
import uuid

import pika
import pytest
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


def api(node, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{node.http}{path}", data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


def test_definitions_and_users_are_the_clusters_and_publishes_reach_any_node(cluster):
    vhost, user = f"vh-{uuid.uuid4().hex[:6]}", f"u-{uuid.uuid4().hex[:6]}"
    quoted = urllib.parse.quote(vhost, safe="")
    # A virtual host and a user made through node 1...
    assert api(cluster.node(1), "PUT", f"/api/v1/amqp/vhosts/{quoted}")[0] == 201
    api(cluster.node(1), "PUT", f"/api/v1/amqp/users/{user}", {"password": "pw", "tags": []})
    api(cluster.node(1), "PUT", f"/api/v1/amqp/permissions/{quoted}/{user}", {"configure": ".*", "write": ".*", "read": ".*"})

    def connect(node_id):
        host, port = cluster.node(node_id).amqp
        creds = pika.PlainCredentials(user, "pw")
        return pika.BlockingConnection(pika.ConnectionParameters(host, port, vhost, creds, connection_attempts=1))

    # ...log in on node 2, which declares a queue (living there), an
    # exchange and a binding.
    home = connect(2)
    ch = home.channel()
    ch.queue_declare("orders", durable=True)
    ch.exchange_declare("shop", "direct", durable=True)
    ch.queue_bind("orders", "shop", routing_key="new")
    # A client on node 3 sees the exchange and publishes through it with
    # confirms and mandatory: routed (not returned) and confirmed once
    # node 2 stored them.
    other = connect(3)
    try:
        och = other.channel()
        och.exchange_declare("shop", "direct", passive=True)
        och.confirm_delivery()
        for i in range(10):
            och.basic_publish("shop", "new", b"o%d" % i, pika.BasicProperties(delivery_mode=2, headers={"n": i}), mandatory=True)
        och.basic_publish("", "orders", b"direct", mandatory=True)
        with pytest.raises(pika.exceptions.UnroutableError):
            och.basic_publish("shop", "no-such-key", b"x", mandatory=True)
    finally:
        other.close()
    got = []
    for method, props, body in ch.consume("orders", inactivity_timeout=10):
        if method is None:
            break
        got.append((body, (props.headers or {}).get("n")))
        ch.basic_ack(method.delivery_tag)
        if len(got) == 11:
            break
    ch.cancel()
    home.close()
    assert got == [(b"o%d" % i, i) for i in range(10)] + [(b"direct", None)]
    # Every node lists the same definitions.
    for n in cluster.nodes:
        bindings = api(n, "GET", f"/api/v1/amqp/bindings?vhost={quoted}")[1]["bindings"]
        assert [(b["source"], b["destination"], b["routing_key"]) for b in bindings] == [("shop", "orders", "new")]
    api(cluster.node(3), "DELETE", f"/api/v1/amqp/vhosts/{quoted}")
    for n in cluster.nodes:
        wait_for(lambda n=n: all(v["name"] != vhost for v in api(n, "GET", "/api/v1/amqp/vhosts")[1]["vhosts"]), 10, "vhost gone")


def test_a_queue_on_another_node_is_refused_with_where_it_lives(cluster):
    """Until queues can be consumed from every node, a client on another
    node gets 404 naming the queue's node (as RabbitMQ when a queue's home
    node is out of reach), not an empty queue that looks usable."""
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
