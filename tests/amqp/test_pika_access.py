"""Users, virtual hosts and permissions, set through the admin API and the
`fjord amqp` CLI, enforced on unmodified pika connections (RabbitMQ's
semantics: 403 ACCESS_REFUSED closes the channel, a refused vhost closes
the connection with 530, a bad password is refused at login)."""

import json
import socket
import time
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pika
import pytest
from pika.exceptions import AMQPConnectionError, ChannelClosedByBroker, ConnectionClosedByBroker, ProbableAuthenticationError

from fjord_fixtures import stop_checked
from fjord_harness import FjordServer, fjord_bin


def api(fjord, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{fjord.http}{path}", data=data, method=method)
    req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def cli(fjord, *args, stdin=None):
    out = subprocess.run(
        [fjord_bin(), "--server", f"http://{fjord.http}", *args],
        input=stdin, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def connect(fjord, user, password, vhost="/", host=None):
    h, port = fjord.amqp
    creds = pika.PlainCredentials(user, password)
    return pika.BlockingConnection(pika.ConnectionParameters(host or h, port, vhost, creds, connection_attempts=1))


def q(s):
    return urllib.parse.quote(s, safe="")


def test_users_vhosts_and_permissions(fjord, unique):
    vhost, user = unique("vh"), unique("user")
    assert api(fjord, "PUT", f"/api/v1/amqp/vhosts/{q(vhost)}")[0] == 201
    assert api(fjord, "PUT", f"/api/v1/amqp/vhosts/{q(vhost)}")[0] == 204
    # The password comes from stdin; the CLI never needs it on the command line.
    cli(fjord, "amqp", "add-user", user, "--tags", "app", stdin="s3cret\n")
    cli(fjord, "amqp", "set-permissions", user, "-p", vhost, "^app\\.", "^app\\.", "^app\\.")
    assert user in cli(fjord, "amqp", "users")
    perms = api(fjord, "GET", "/api/v1/amqp/permissions")[1]["permissions"]
    assert {"vhost": vhost, "user": user, "configure": "^app\\.", "write": "^app\\.", "read": "^app\\."} in perms

    # A wrong password is refused at login.
    with pytest.raises((ProbableAuthenticationError, AMQPConnectionError)):
        connect(fjord, user, "wrong", vhost)
    # No permission on "/": the vhost is refused (530, connection level).
    with pytest.raises((ConnectionClosedByBroker, AMQPConnectionError)):
        connect(fjord, user, "s3cret", "/")

    conn = connect(fjord, user, "s3cret", vhost)
    ch = conn.channel()
    ch.queue_declare("app.q", durable=True)
    ch.exchange_declare("app.x", "direct")
    ch.queue_bind("app.q", "app.x", "k")
    ch.confirm_delivery()
    ch.basic_publish("app.x", "k", b"allowed")
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare("other")
    assert e.value.reply_code == 403
    assert e.value.reply_text == f"ACCESS_REFUSED - access to queue 'other' in vhost '{vhost}' refused for user '{user}'"
    # Other channels of the connection keep working.
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_publish("", "app.q", b"default exchange is amq.default")
        ch.queue_declare("app.q", passive=True)
    assert e.value.reply_code == 403
    assert "amq.default" in e.value.reply_text
    ch = conn.channel()
    method, _, body = ch.basic_get("app.q", auto_ack=True)
    assert body == b"allowed"
    conn.close()

    # The admin views show the vhost's definitions.
    queues = api(fjord, "GET", f"/api/v1/amqp/queues?vhost={q(vhost)}")[1]["queues"]
    assert [x["name"] for x in queues] == ["app.q"]
    assert queues[0]["messages_ready"] == 0 and queues[0]["durable"] is True
    bindings = api(fjord, "GET", f"/api/v1/amqp/bindings?vhost={q(vhost)}")[1]["bindings"]
    assert [(b["source"], b["destination"], b["routing_key"]) for b in bindings] == [("app.x", "app.q", "k")]
    assert "app.x" in cli(fjord, "amqp", "exchanges", "-p", vhost)
    assert api(fjord, "GET", "/api/v1/amqp/queues?vhost=no-such-vhost")[0] == 404

    # The password is stored hashed, never in clear.
    users_file = (fjord.data_dir / "documents.json").read_text()
    assert "s3cret" not in users_file and "rabbit_password_hashing_sha256" in users_file

    # Deleting the user ends its logins; deleting the vhost drops its queues.
    cli(fjord, "amqp", "delete-user", user)
    with pytest.raises((ProbableAuthenticationError, AMQPConnectionError)):
        connect(fjord, user, "s3cret", vhost)
    cli(fjord, "amqp", "delete-vhost", vhost, "--yes")
    assert all(v["name"] != vhost for v in api(fjord, "GET", "/api/v1/amqp/vhosts")[1]["vhosts"])


def test_rabbitmq_password_hashes_import(fjord, unique):
    # RabbitMQ's documented example: salt 908DC60A, password "test12".
    user = unique("imported")
    status, _ = api(fjord, "PUT", f"/api/v1/amqp/users/{q(user)}",
                    {"password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"})
    assert status == 204
    api(fjord, "PUT", f"/api/v1/amqp/permissions/%2F/{q(user)}", {"configure": "", "write": "", "read": ".*"})
    conn = connect(fjord, user, "test12")
    ch = conn.channel()
    # read-only: a declare is refused.
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare(unique("q"))
    assert e.value.reply_code == 403
    conn.close()
    assert api(fjord, "PUT", f"/api/v1/amqp/permissions/%2F/{q(user)}", {"configure": "(", "write": "", "read": ""})[0] == 400
    assert api(fjord, "PUT", "/api/v1/amqp/permissions/%2F/nobody-at-all", {"configure": "", "write": "", "read": ""})[0] == 404


def non_loopback_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


@pytest.mark.fjord_only
def test_guest_logs_in_from_loopback_only(tmp_path):
    addr = non_loopback_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    env = {"FJORD_LISTENERS__AMQP__BIND": "0.0.0.0:0"}
    server = FjordServer(tmp_path / "data", env=env).start()
    try:
        # Another user reaches the broker over that address...
        assert api(server, "PUT", "/api/v1/amqp/users/remote", {"password": "pw"})[0] == 204
        api(server, "PUT", "/api/v1/amqp/permissions/%2F/remote", {"configure": ".*", "write": ".*", "read": ".*"})
        connect(server, "remote", "pw", host=addr).close()
        # ...guest does not, though its password is right; from loopback it does.
        with pytest.raises((ProbableAuthenticationError, AMQPConnectionError)):
            connect(server, "guest", "guest", host=addr)
        connect(server, "guest", "guest").close()
    finally:
        stop_checked(server)


def wait_until(cond, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_disk_alarm_blocks_publishers_until_space_is_back(fjord, params, unique):
    q = unique("q")
    conn = pika.BlockingConnection(params)
    events = []
    conn.add_on_connection_blocked_callback(lambda c, m: events.append(("blocked", m.method.reason)))
    conn.add_on_connection_unblocked_callback(lambda c, m: events.append(("unblocked", None)))
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"before")
    other = pika.BlockingConnection(params)
    try:
        # A limit above any free space raises the alarm at once.
        status, body = api(fjord, "PUT", "/api/v1/amqp/disk-alarm", {"limit_bytes": 2**62})
        assert status == 200 and body["alarm"] is True, body
        wait_until(lambda: conn.process_data_events(time_limit=0.05) or events, what="connection.blocked")
        assert events == [("blocked", "low on disk")]
        ch.basic_publish("", q, b"while-blocked")
        # Consumers go on: the message stored before the alarm is delivered.
        got = other.channel().basic_get(q, auto_ack=True)
        assert got[2] == b"before"
        # The blocked publish is held, not stored, until the alarm clears.
        conn.process_data_events(time_limit=1)
        oc = other.channel()
        assert oc.basic_get(q, auto_ack=True) == (None, None, None)
        assert "alarm" in cli(fjord, "amqp", "disk-alarm")
        cli(fjord, "amqp", "disk-alarm", "--limit", "0")
        wait_until(lambda: conn.process_data_events(time_limit=0.05) or len(events) == 2, what="connection.unblocked")
        assert events[1] == ("unblocked", None)
        wait_until(lambda: oc.basic_get(q, auto_ack=True)[2] == b"while-blocked", what="the held publish")
    finally:
        api(fjord, "PUT", "/api/v1/amqp/disk-alarm", {"limit_bytes": 50_000_000})
        other.close()
        if conn.is_open:
            conn.close()


def test_deleting_a_user_closes_its_connections(fjord, unique):
    user = unique("user")
    assert api(fjord, "PUT", f"/api/v1/amqp/users/{q(user)}", {"password": "pw"})[0] == 204
    api(fjord, "PUT", f"/api/v1/amqp/permissions/%2F/{q(user)}", {"configure": ".*", "write": ".*", "read": ".*"})
    conn = connect(fjord, user, "pw")
    conn.channel()
    assert api(fjord, "DELETE", f"/api/v1/amqp/users/{q(user)}")[0] == 204
    with pytest.raises(ConnectionClosedByBroker) as e:
        wait_until(lambda: conn.process_data_events(time_limit=0.1) or False, what="the forced close")
    assert e.value.reply_code == 320
    assert f"user '{user}' is deleted" in e.value.reply_text


def test_management_api_needs_a_management_tag_and_shows_own_connections(fjord, unique):
    """RabbitMQ's management API (listeners.amqp_management): a user
    without a management tag is refused; a `management` user sees only its
    own connections and may not close others'."""
    from test_pika_management import call

    mgmt = "http://" + fjord.bound["amqp_management"]
    plain, manager = unique("plain"), unique("manager")
    for user, tags in ((plain, []), (manager, ["management"])):
        body = {"password": "pw", "tags": tags}
        assert api(fjord, "PUT", f"/api/v1/amqp/users/{q(user)}", body)[0] == 204
        api(fjord, "PUT", f"/api/v1/amqp/permissions/%2F/{q(user)}", {"configure": ".*", "write": ".*", "read": ".*"})
    status, body = call(mgmt, "GET", "/api/connections", user=plain, password="pw")
    assert (status, body["reason"]) == (401, "Not management user")
    mine, guests = connect(fjord, manager, "pw"), connect(fjord, "guest", "guest")
    try:
        def names(user, password):
            status, conns = call(mgmt, "GET", "/api/connections", user=user, password=password)
            assert status == 200
            return {c["user"] for c in conns}

        assert names(manager, "pw") == {manager}
        assert {manager, "guest"} <= names("guest", "guest")
        status, conns = call(mgmt, "GET", "/api/connections")
        guest_conn = next(c["name"] for c in conns if c["user"] == "guest")
        path = "/api/connections/" + q(guest_conn)
        assert call(mgmt, "DELETE", path, user=manager, password="pw")[0] == 401
        assert guests.is_open
    finally:
        mine.close()
        guests.close()
