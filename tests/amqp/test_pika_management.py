"""RabbitMQ's management HTTP API — the part AMQP tools and client test
suites use (connections, queues, whoami) — against Fjord's
`listeners.amqp_management`, or RabbitMQ's own plugin with
`scripts/peers test-amqp`. RabbitMQ refreshes its figures every few
seconds, so checks poll."""

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import pika
import pytest
from pika.exceptions import ConnectionClosedByBroker


@pytest.fixture(scope="session")
def mgmt(request):
    peer = os.environ.get("FJORD_PEER_AMQP_MGMT")
    if peer:
        return f"http://{peer}"
    if os.environ.get("FJORD_PEER_AMQP"):
        pytest.skip("the peer's management address is not set (FJORD_PEER_AMQP_MGMT)")
    return "http://" + request.getfixturevalue("fjord").bound["amqp_management"]


def call(mgmt, method, path, user="guest", password="guest", headers=None):
    req = urllib.request.Request(mgmt + path, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, json.loads(body) if body else None


def poll(check, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def test_connections_are_listed_by_client_name_and_closed_with_320(params, mgmt, unique):
    name = unique("conn")
    c = pika.BlockingConnection(
        pika.ConnectionParameters(params.host, params.port, client_properties={"connection_name": name})
    )
    c.channel()

    def listed():
        status, conns = call(mgmt, "GET", "/api/connections/")
        assert status == 200
        return next((x for x in conns if x.get("client_properties", {}).get("connection_name") == name), None)

    found = poll(listed)
    assert found, "the connection is listed under its client-given name"
    assert (found["user"], found["vhost"], found["protocol"]) == ("guest", "/", "AMQP 0-9-1")
    path = "/api/connections/" + urllib.parse.quote(found["name"], safe="")
    status, one = call(mgmt, "GET", path)
    assert status == 200 and one["name"] == found["name"]
    status, _ = call(mgmt, "DELETE", path, headers={"X-Reason": "closed by the test"})
    assert status == 204
    with pytest.raises(ConnectionClosedByBroker) as closed:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            c.process_data_events(time_limit=0.2)
    assert closed.value.reply_code == 320
    assert "closed by the test" in closed.value.reply_text
    assert poll(lambda: listed() is None), "gone from the list"
    status, _ = call(mgmt, "DELETE", path)
    assert status == 404


def test_bad_credentials_are_refused_and_whoami_names_the_caller(mgmt):
    status, body = call(mgmt, "GET", "/api/connections/", password="wrong")
    assert status == 401 and body["error"] == "not_authorized"
    status, body = call(mgmt, "GET", "/api/whoami")
    assert status == 200 and body["name"] == "guest"
    assert "administrator" in (body["tags"] if isinstance(body["tags"], list) else body["tags"].split(","))


def test_queue_counts_ready_unacked_and_consumers(ch, mgmt, unique):
    q = unique("q")
    ch.queue_declare(q, durable=True)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode())
    method, _, _ = ch.basic_get(q, auto_ack=False)
    assert method is not None

    def counts():
        status, body = call(mgmt, "GET", f"/api/queues/%2F/{urllib.parse.quote(q, safe='')}")
        assert status == 200
        got = (body.get("messages_ready"), body.get("messages_unacknowledged"), body.get("messages"))
        return body if got == (2, 1, 3) else None

    body = poll(counts)
    assert body, "ready 2, unacked 1, total 3"
    assert (body["name"], body["vhost"], body["durable"]) == (q, "/", True)
    status, listed = call(mgmt, "GET", "/api/queues/%2F")
    assert status == 200 and q in [x["name"] for x in listed]
    status, _ = call(mgmt, "GET", "/api/queues/%2F/no-such-queue-" + q)
    assert status == 404
    ch.basic_ack(method.delivery_tag)


def test_exchanges_and_bindings_are_shown_as_rabbitmq_shows_them(ch, mgmt, unique):
    x, q = unique("x"), unique("q")
    ch.exchange_declare(x, "topic", durable=True)
    ch.queue_declare(q, durable=True)
    ch.queue_bind(q, x, "orders.*")
    quoted = urllib.parse.quote

    def exchange():
        status, body = call(mgmt, "GET", f"/api/exchanges/%2F/{quoted(x, safe='')}")
        return body if status == 200 else None

    body = poll(exchange)
    assert body and (body["name"], body["type"], body["durable"], body["internal"]) == (x, "topic", True, False)
    status, default = call(mgmt, "GET", "/api/exchanges/%2F/amq.default")
    assert status == 200 and default["name"] == "" and default["type"] == "direct"
    status, listed = call(mgmt, "GET", "/api/exchanges/%2F")
    assert status == 200 and {"", "amq.topic", x} <= {e["name"] for e in listed}

    status, bindings = call(mgmt, "GET", f"/api/queues/%2F/{quoted(q, safe='')}/bindings")
    assert status == 200
    seen = {(b["source"], b["routing_key"], b["destination_type"]) for b in bindings}
    # The default exchange's implicit binding, then the declared one.
    assert seen == {("", q, "queue"), (x, "orders.*", "queue")}
    status, all_bindings = call(mgmt, "GET", "/api/bindings/%2F")
    assert status == 200 and any(b["source"] == x and b["destination"] == q for b in all_bindings)
    assert call(mgmt, "GET", "/api/exchanges/no-such-vhost-" + q)[0] == 404
