"""pika (AMQP 0-9-1) against the 3-node cluster: a queue is led by the node
its declaring client is connected to (RabbitMQ's default client-local
queue locator), so that client's publishes with confirms and consumes
stay on its node; Kafka clients see the queue's topic led there.
Definitions (virtual hosts, exchanges, queues, bindings) and users are the
cluster's: what one node declares every node routes with, and a client on
any node publishes to and consumes from a queue on another.
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


def amqp_connect(cluster, node_id, user="guest", password="guest", vhost="/"):
    host, port = cluster.node(node_id).amqp
    creds = pika.PlainCredentials(user, password)
    return pika.BlockingConnection(pika.ConnectionParameters(host, port, vhost, creds, connection_attempts=1))


def publish_confirmed(ch, queue, bodies):
    """Declares durable `queue` and publishes `bodies` to it, confirmed."""
    ch.confirm_delivery()
    ch.queue_declare(queue, durable=True)
    for b in bodies:
        ch.basic_publish("", queue, b, pika.BasicProperties(delivery_mode=2), mandatory=True)


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
        return amqp_connect(cluster, node_id, user, "pw", vhost)

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


def test_a_queue_on_another_node_is_used_through_any_node(cluster):
    """A queue lives on its declaring client's node; a client on another
    node declares, gets, consumes, acks, rejects, purges and binds it as
    if it were local (the node forwards to the queue's node), and what it
    leaves unacked goes back to the queue when its channel closes. Only a
    stream queue, read from its log, is refused elsewhere with 404 naming
    its node."""
    queue, stream = f"q-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"

    home = amqp_connect(cluster, 2)
    try:
        ch = home.channel()
        ch.queue_declare(stream, durable=True, arguments={"x-queue-type": "stream"})
        publish_confirmed(ch, queue, [b"m%d" % i for i in range(5)])
        for n in cluster.nodes:
            wait_for(lambda n=n: set(leaders(n, queue).values()) == {2}, 10, f"{queue} led by node 2")
        other = amqp_connect(cluster, 1)
        try:
            c = other.channel()
            assert c.queue_declare(queue, passive=True).method.message_count == 5
            # Every node's admin API counts it where it lives.
            for n in cluster.nodes:
                listed = [x for x in api(n, "GET", "/api/v1/amqp/queues?vhost=%2F")[1]["queues"] if x["name"] == queue]
                assert [(x["messages_ready"], x["messages_unacknowledged"]) for x in listed] == [(5, 0)], (n.http, listed)
            method, _, body = c.basic_get(queue)
            assert body == b"m0"
            c.basic_reject(method.delivery_tag, requeue=True)
            method, _, body = c.basic_get(queue)
            assert body == b"m0" and method.redelivered
            c.basic_ack(method.delivery_tag)
            # A consumer on node 1 takes two and leaves one unacked; closing
            # its channel returns that one to the queue on node 2.
            c.basic_qos(prefetch_count=2)
            got = []
            for method, _, body in c.consume(queue, inactivity_timeout=10):
                assert method is not None, "no delivery from node 2's queue"
                got.append((method.delivery_tag, body))
                if len(got) == 2:
                    break
            assert [b for _, b in got] == [b"m1", b"m2"]
            c.basic_ack(got[0][0])
            c.close()
            c = other.channel()
            c.queue_bind(queue, "amq.direct", routing_key="to-q")
            c.confirm_delivery()
            c.basic_publish("amq.direct", "to-q", b"bound", mandatory=True)
            # m2 (returned), m3, m4, bound.
            wait_for(lambda: c.queue_declare(queue, passive=True).method.message_count == 4, 10, "4 ready")
            assert c.queue_purge(queue).method.message_count == 4
            assert c.queue_declare(queue, passive=True).method.message_count == 0
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
                c.basic_consume(stream, lambda *a: None, arguments={"x-stream-offset": "first"})
            assert e.value.reply_code == 404 and "node 2" in e.value.reply_text, e.value
        finally:
            other.close()
        # Node 2 sees what node 1 did: the queue is empty.
        assert ch.queue_declare(queue, passive=True).method.message_count == 0
    finally:
        home.close()


def test_a_killed_node_keeps_its_durable_queues_and_drops_its_transient_ones(cluster):
    """kill -9 of a queue's node: its confirmed messages are there after the
    restart, read through another node; its transient queue is gone (as
    RabbitMQ drops transient queues with their node), on every node."""
    durable, transient = f"d-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"

    def ready(conn, queue):
        ch = conn.channel()
        try:
            return ch.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as e:
            return e.reply_code

    victim = amqp_connect(cluster, 3)
    ch = victim.channel()
    ch.confirm_delivery()
    ch.queue_declare(durable, durable=True)
    ch.queue_declare(transient, durable=False)
    for i in range(3):
        ch.basic_publish("", durable, b"kept%d" % i, pika.BasicProperties(delivery_mode=2), mandatory=True)
    observer = amqp_connect(cluster, 1)
    try:
        assert ready(observer, transient) == 0, "node 1 sees node 3's transient queue"
        before = cluster.node(3).proc.pid
        cluster.kill(3)
        try:
            cluster.restart(3)
        finally:
            if not cluster.node(3).running:
                cluster.restart(3)
        assert cluster.node(3).proc.pid != before
        wait_for(lambda: ready(observer, transient) == 404, 30, "the transient queue gone after its node restarted")
        wait_for(lambda: ready(observer, durable) == 3, 30, "the durable queue's messages back")
        c = observer.channel()
        got = [c.basic_get(durable, auto_ack=True)[2] for _ in range(3)]
        assert got == [b"kept0", b"kept1", b"kept2"]
    finally:
        observer.close()


def test_deliveries_to_a_lost_node_go_back_to_the_queue(cluster):
    """A consumer on node 3 holds unacked deliveries of a queue on node 2;
    node 3 is killed: node 2 returns them to the queue once node 3 is
    fenced (within its lease), not after their half-hour invisibility, and
    a consumer on node 2 gets them, redelivered."""
    queue = f"q-{uuid.uuid4().hex[:8]}"

    home = amqp_connect(cluster, 2)
    try:
        ch = home.channel()
        publish_confirmed(ch, queue, [b"h%d" % i for i in range(3)])
        remote = amqp_connect(cluster, 3)
        c = remote.channel()
        c.basic_qos(prefetch_count=3)
        held = []
        for method, _, body in c.consume(queue, inactivity_timeout=10):
            assert method is not None, "no delivery through node 3"
            held.append(body)
            if len(held) == 3:
                break
        assert ch.queue_declare(queue, passive=True).method.message_count == 0
        cluster.kill(3)
        try:
            wait_for(lambda: ch.queue_declare(queue, passive=True).method.message_count == 3, 30,
                     "node 3's unacked deliveries back in the queue")
            got = []
            for method, _, body in ch.consume(queue, inactivity_timeout=10):
                assert method is not None and method.redelivered
                got.append(body)
                ch.basic_ack(method.delivery_tag)
                if len(got) == 3:
                    break
            ch.cancel()
            assert sorted(got) == sorted(held)
        finally:
            cluster.restart(3)
    finally:
        home.close()


def test_a_live_consumers_deliveries_stay_its_own_when_the_queue_fails_over(cluster):
    """A consumer on node 3 holds unacked deliveries of a queue on node 2;
    node 2 is killed: the node that takes the queue over keeps them out
    (their consumer is still connected: handing them to another consumer
    would deliver them twice), another consumer gets only the messages
    never handed out, and the holder's acks, through the new leader,
    settle them — as a RabbitMQ quorum queue keeps a live consumer's
    unacked messages across a leader change. The other consumer subscribes
    right after the kill: its consume waits for the queue's new node."""
    queue = f"q-{uuid.uuid4().hex[:8]}"
    home = amqp_connect(cluster, 2)
    ch = home.channel()
    publish_confirmed(ch, queue, [b"f%d" % i for i in range(5)])
    home.close()

    def pop_shards():
        """(records written, all committed) of the `__fjord_pop` shards,
        each as its leader reports it."""
        written, committed = 0, True
        for node_id, n in enumerate(cluster.nodes, start=1):
            for p in n.http_json("/api/v1/topics/__fjord_pop")["partitions"]:
                if p["leader"] == node_id:
                    written += p["log_end_offset"]
                    committed = committed and p["high_watermark"] == p["log_end_offset"]
        return written, committed

    before, _ = pop_shards()
    remote = amqp_connect(cluster, 3)
    try:
        c = remote.channel()
        c.basic_qos(prefetch_count=3)
        held = []
        for method, _, body in c.consume(queue, inactivity_timeout=10):
            assert method is not None, "no delivery through node 3"
            held.append((method.delivery_tag, body))
            if len(held) == 3:
                break
        # AMQP's pops are answered before their shard write commits (a
        # crash within those moments delivers them again, as documented):
        # the kill waits until the deliveries are on their shard.
        def on_shard():
            written, committed = pop_shards()
            return written > before and committed

        wait_for(on_shard, 10, "the deliveries on their pop shard")
        cluster.kill(2)
        try:
            # At once: the consume below waits for the queue's new node.
            observer = amqp_connect(cluster, 1)
            try:
                oc = observer.channel()
                got, idle = [], 0
                for method, _, body in oc.consume(queue, inactivity_timeout=1):
                    if method is None:
                        # Waiting out the failover, then three quiet seconds
                        # once the two never handed out have come.
                        idle += 1
                        assert idle < 40, f"got {got} only"
                        if len(got) >= 2 and idle >= 3:
                            break
                        continue
                    idle = 0
                    got.append(body)
                    oc.basic_ack(method.delivery_tag)
                assert sorted(got) == sorted(set(b"f%d" % i for i in range(5)) - {b for _, b in held}), \
                    f"held {held}, another consumer got {got}"
                for tag, _ in held:
                    c.basic_ack(tag)
                c.cancel()
                wait_for(lambda: oc.queue_declare(queue, passive=True).method.message_count == 0, 10,
                         "the queue empty once the holder acked")
                remote.close()
                # Settled: nothing comes back once the holder is gone.
                assert oc.queue_declare(queue, passive=True).method.message_count == 0
                oc.queue_delete(queue)
            finally:
                observer.close()
        finally:
            cluster.restart(2)
    finally:
        if remote.is_open:
            remote.close()


def test_length_limits_hold_for_publishes_through_another_node(cluster):
    """x-max-length on a queue of node 2, publishes through node 3: a
    reject-publish queue nacks the publish over the limit, a drop-head one
    drops its oldest."""
    rejecting, dropping = f"r-{uuid.uuid4().hex[:8]}", f"h-{uuid.uuid4().hex[:8]}"

    home = amqp_connect(cluster, 2)
    other = amqp_connect(cluster, 3)
    try:
        ch = home.channel()
        ch.queue_declare(rejecting, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
        ch.queue_declare(dropping, arguments={"x-max-length": 2})
        c = other.channel()
        c.confirm_delivery()
        for i in range(2):
            c.basic_publish("", rejecting, b"r%d" % i)
        with pytest.raises(pika.exceptions.NackError):
            c.basic_publish("", rejecting, b"r2")
        for i in range(3):
            c.basic_publish("", dropping, b"h%d" % i)
        assert ch.queue_declare(rejecting, passive=True).method.message_count == 2
        wait_for(lambda: ch.queue_declare(dropping, passive=True).method.message_count == 2, 10, "trimmed to 2")
        assert [ch.basic_get(dropping, auto_ack=True)[2] for _ in range(2)] == [b"h1", b"h2"]
    finally:
        other.close()
        home.close()


def test_consumers_on_every_node_count_at_the_queue_node(cluster):
    """Consumers of a node-2 queue on nodes 2 and 3 are counted together:
    declare-ok says 2 through node 1, if-unused refuses, the auto-delete
    queue stays while either consumes and goes when the last one leaves,
    and an exclusive consumer on node 3 keeps out consumers of every node."""
    auto, excl = f"a-{uuid.uuid4().hex[:8]}", f"e-{uuid.uuid4().hex[:8]}"
    conns = {n: amqp_connect(cluster, n) for n in (1, 2, 3)}

    def consumers(queue):
        ch = conns[1].channel()
        try:
            return ch.queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker as e:
            return e.reply_code

    try:
        home, remote = conns[2].channel(), conns[3].channel()
        home.queue_declare(auto, auto_delete=True)
        home.queue_declare(excl, durable=True)
        tag_home = home.basic_consume(auto, lambda *a: None)
        tag_remote = remote.basic_consume(auto, lambda *a: None)
        assert consumers(auto) == 2
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            conns[1].channel().queue_delete(auto, if_unused=True)
        assert e.value.reply_code == 406
        home.basic_cancel(tag_home)
        wait_for(lambda: consumers(auto) == 1, 10, "one consumer left")
        remote.basic_cancel(tag_remote)
        wait_for(lambda: consumers(auto) == 404, 10, "auto-deleted once the last consumer, on node 3, left")

        remote.basic_consume(excl, lambda *a: None, exclusive=True)
        for n in (1, 2):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
                conns[n].channel().basic_consume(excl, lambda *a: None)
            assert e.value.reply_code == 403, (n, e.value)
        assert consumers(excl) == 1
    finally:
        for c in conns.values():
            c.close()
