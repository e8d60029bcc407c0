"""Every admin API endpoint against a real broker, with good and bad input."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata


def create(api, name, partitions=1, config=None):
    status, body = api.post("/api/v1/topics", {"name": name, "partitions": partitions, "config": config or {}})
    assert status == 201, body
    return body


def test_health_and_cluster(api, fjord):
    assert api.get("/livez") == (200, "ok")
    assert api.get("/readyz") == (200, "ready")
    status, c = api.get("/api/v1/cluster")
    assert status == 200
    node = c["nodes"][0]
    assert node["listeners"]["kafka"] == fjord.bootstrap
    assert node["uptime_ms"] >= 0 and node["disk"]["total_bytes"] > 0
    assert abs(node["time_ms"] - time.time() * 1000) < 60_000, node["time_ms"]
    assert node["disk"]["used_bytes"] > 0, "the data directory holds at least the cluster id"
    status, h = api.get("/api/v1/cluster/health")
    checks = {c["name"]: c["ok"] for c in h["checks"]}
    assert status == 200 and checks["ready"] and checks["storage_writable"], h
    assert set(checks) == {
        "ready", "storage_writable", "disk_space", "logs_writable", "topics_online", "partitions_replicated",
    }
    assert checks["logs_writable"] and checks["topics_online"], "nothing poisoned or offline: %s" % h
    assert checks["partitions_replicated"], "a single node leads every partition: %s" % h
    assert h["status"] == ("ok" if all(checks.values()) else "degraded")


def test_cluster_rates_follow_traffic(api, unique):
    t = unique()
    create(api, t)
    before = api.get("/api/v1/cluster")[1]["nodes"][0]
    status, _ = api.post(f"/api/v1/topics/{t}/messages", {"messages": [{"value": f"m{i}"} for i in range(50)]})
    assert status == 200
    after = api.get("/api/v1/cluster")[1]["nodes"][0]
    assert after["records_in_total"] - before["records_in_total"] == 50
    assert after["bytes_in_total"] > before["bytes_in_total"]
    assert after["put_tps"] > 0


def test_topic_lifecycle_and_errors(api, unique):
    t = unique()
    body = create(api, t, 2, {"retention.ms": "3600000"})
    assert [p["partition"] for p in body["partitions"]] == [0, 1]
    assert body["config"] == {"retention.ms": "3600000"} and body["kind"] == "normal"

    status, err = api.post("/api/v1/topics", {"name": t, "partitions": 1})
    assert (status, err["code"]) == (409, "topic_exists")
    status, err = api.post("/api/v1/topics", raw=b"{not json")
    assert (status, err["code"]) == (400, "bad_request")
    status, err = api.post("/api/v1/topics", {"name": unique(), "config": {"retention.ms": "soon"}})
    assert (status, err["code"]) == (400, "invalid_config")
    assert "retention.ms" in err["message"]
    status, err = api.post("/api/v1/topics", {"name": unique(), "colour": "blue"})
    assert status == 400 and "colour" in err["message"]

    status, listed = api.get("/api/v1/topics")
    row = next(x for x in listed["topics"] if x["name"] == t)
    assert row["partitions"] == 2 and row["messages"] == 0

    status, altered = api.call(
        "PATCH", f"/api/v1/topics/{t}", {"partitions": 4, "config": {"segment.bytes": "1048576"}, "reset_config": ["retention.ms"]}
    )
    assert status == 200, altered
    assert len(altered["partitions"]) == 4
    assert altered["config"] == {"segment.bytes": "1048576"}
    status, err = api.call("PATCH", f"/api/v1/topics/{t}", {"partitions": 1})
    assert (status, err["code"]) == (400, "bad_request") and "not removed" in err["message"]

    status, err = api.get(f"/api/v1/topics/{unique()}")
    assert (status, err["code"]) == (404, "unknown_topic")
    assert api.call("DELETE", f"/api/v1/topics/{t}")[0] == 204
    assert api.get(f"/api/v1/topics/{t}")[0] == 404
    status, err = api.get("/api/v1/nothing-here")
    assert (status, err["code"]) == (404, "not_found")
    status, err = api.get("/api/v1/topics/x/partitions/notanumber/messages")
    assert (status, err["code"]) == (400, "bad_request")


def test_send_query_browse_and_view(api, unique):
    t = unique()
    create(api, t, 2)
    msgs = [
        {"value": "order-1", "tag": "paid", "keys": ["o-1"], "headers": {"source": "web"}, "partition": 0},
        {"value": "order-2", "tag": "new", "keys": ["o-2"], "partition": 0},
        {"value": "order-3", "tag": "paid", "keys": ["o-3"], "partition": 1},
    ]
    status, sent = api.post(f"/api/v1/topics/{t}/messages", {"messages": msgs})
    assert status == 200, sent
    ids = [r["message_id"] for r in sent["results"]]
    assert [(r["partition"], r["offset"]) for r in sent["results"]] == [(0, 0), (0, 1), (1, 0)]

    status, by_key = api.get(f"/api/v1/topics/{t}/messages?key=o-2")
    assert [m["value"] for m in by_key["messages"]] == ["order-2"]
    status, by_id = api.get(f"/api/v1/topics/{t}/messages?id={ids[0]}")
    m = by_id["messages"][0]
    assert (m["value"], m["tag"], m["keys"], m["properties"]) == ("order-1", "paid", ["o-1"], {"source": "web"})
    status, by_tag = api.get(f"/api/v1/topics/{t}/messages?tag=paid")
    assert sorted(m["value"] for m in by_tag["messages"]) == ["order-1", "order-3"]
    assert by_tag["scanned"] == 3
    status, by_time = api.get(f"/api/v1/topics/{t}/messages?start_ms=0&limit=2")
    assert status == 200 and len(by_time["messages"]) == 2
    status, none = api.get(f"/api/v1/topics/{t}/messages?id=NOPE")
    assert status == 200 and none["messages"] == []
    status, err = api.get(f"/api/v1/topics/{t}/messages?key=a&tag=b")
    assert (status, err["code"]) == (400, "bad_request")
    status, err = api.get(f"/api/v1/topics/{t}/messages?tag=x&limit=0")
    assert status == 400

    status, page = api.get(f"/api/v1/topics/{t}/partitions/0/messages?offset=1")
    assert [m["value"] for m in page["messages"]] == ["order-2"]
    assert (page["next_offset"], page["high_watermark"]) == (2, 2)
    status, page = api.get(f"/api/v1/topics/{t}/partitions/0/messages?limit=1")
    assert [m["offset"] for m in page["messages"]] == [0] and page["next_offset"] == 1
    status, page = api.get(f"/api/v1/topics/{t}/partitions/0/messages?start_ms={int(time.time() * 1000) + 60_000}")
    assert page["messages"] == []
    status, err = api.get(f"/api/v1/topics/{t}/partitions/0/messages?offset=99")
    assert (status, err["code"]) == (416, "offset_out_of_range")
    status, err = api.get(f"/api/v1/topics/{t}/partitions/5/messages")
    assert (status, err["code"]) == (404, "unknown_partition")

    status, one = api.get(f"/api/v1/topics/{t}/partitions/0/messages/0")
    assert one["message_id"] == ids[0]
    assert {"key": "source", "value": "web", "value_encoding": "utf8"} in one["headers"]
    status, err = api.get(f"/api/v1/topics/{t}/partitions/0/messages/2")
    assert (status, err["code"]) == (404, "unknown_message")

    status, err = api.post(f"/api/v1/topics/{t}/messages", {"messages": [{"value": "x", "partition": 9}]})
    assert (status, err["code"]) == (404, "unknown_partition")
    status, err = api.post(f"/api/v1/topics/{t}/messages", {"messages": []})
    assert status == 400


def test_binary_kafka_records_are_base64(api, fjord, unique):
    t = unique()
    create(api, t)
    p = KafkaProducer(bootstrap_servers=fjord.bootstrap)
    p.send(t, key=b"\xff\x00k", value=b"\x00\x01\xfe", headers=[("h", b"\xc3\x28")]).get(timeout=30)
    p.close()
    status, m = api.get(f"/api/v1/topics/{t}/partitions/0/messages/0")
    assert status == 200
    assert (m["key"], m["key_encoding"]) == ("/wBr", "base64")
    assert (m["value"], m["value_encoding"]) == ("AAH+", "base64")
    assert m["headers"] == [{"key": "h", "value": "wyg=", "value_encoding": "base64"}]


def test_delayed_messages_are_listed_until_due(api, unique):
    t = unique()
    create(api, t)
    status, sent = api.post(f"/api/v1/topics/{t}/messages", {"messages": [{"value": "later", "delay_ms": 3_600_000}]})
    r = sent["results"][0]
    assert r["offset"] is None and r["deliver_at_ms"] > time.time() * 1000
    status, d = api.get(f"/api/v1/delayed?topic={t}")
    assert status == 200 and d["pending"] >= 1
    assert [(x["message"]["value"], x["message"]["topic"], x["deliver_at_ms"]) for x in d["messages"]] == [
        ("later", t, r["deliver_at_ms"])
    ]
    status, d = api.get(f"/api/v1/delayed?topic={unique()}")
    assert d["messages"] == []
    assert api.get("/api/v1/delayed?limit=0")[0] == 400


def test_dead_letter_queue_list_browse_resend(api, unique):
    origin, group = unique("orders"), unique("g")
    create(api, origin)
    dlq = f"%DLQ%{group}"
    create(api, dlq, 1, {"fjord.key.index": "true"})
    headers = [["fjord.id", "DEAD0001"], ["fjord.origin-topic", origin], ["fjord.origin-partition", "0"], ["fjord.attempt", "15"]]
    status, _ = api.post(f"/api/v1/topics/%25DLQ%25{group}/partitions/0/records", {"records": [{"value": "poison", "headers": headers}]})
    assert status == 200
    status, listed = api.get("/api/v1/dlq")
    assert {"group": group, "topic": dlq, "messages": 1} in listed["queues"]
    status, page = api.get(f"/api/v1/dlq/{group}/messages")
    assert [(m["value"], m["message_id"], m["origin_topic"]) for m in page["messages"]] == [("poison", "DEAD0001", origin)]
    status, err = api.post(f"/api/v1/dlq/{group}/resend", {"ids": ["DEAD0001", "MISSING"]})
    assert (status, err["code"]) == (404, "unknown_message")
    assert api.get(f"/api/v1/topics/{origin}")[1]["partitions"][0]["messages"] == 0, "nothing is resent when one id is bad"
    status, res = api.post(f"/api/v1/dlq/{group}/resend", {"ids": ["DEAD0001"]})
    assert status == 200, res
    assert [(r["message_id"], r["topic"]) for r in res["resent"]] == [("DEAD0001", origin)]
    status, page = api.get(f"/api/v1/topics/{origin}/partitions/0/messages")
    assert [(m["value"], m["attempt"]) for m in page["messages"]] == [("poison", 0)]
    status, err = api.get(f"/api/v1/dlq/{unique()}/messages")
    assert (status, err["code"]) == (404, "unknown_dlq")


def test_groups_lag_reset_and_delete(api, fjord, unique):
    t, g = unique(), unique("g")
    create(api, t, 2)
    api.post(f"/api/v1/topics/{t}/messages", {"messages": [{"value": f"v{i}", "partition": i % 2} for i in range(10)]})
    c = KafkaConsumer(bootstrap_servers=fjord.bootstrap, group_id=g, enable_auto_commit=False, auto_offset_reset="earliest")
    c.assign([TopicPartition(t, 0), TopicPartition(t, 1)])
    c.commit({TopicPartition(t, 0): OffsetAndMetadata(2, "", -1), TopicPartition(t, 1): OffsetAndMetadata(5, "", -1)})
    c.close()

    status, groups = api.get("/api/v1/groups")
    row = next(x for x in groups["groups"] if x["name"] == g)
    assert row["lag"] == 3  # partition 0: 5 - 2; partition 1: 5 - 5
    status, d = api.get(f"/api/v1/groups/{g}")
    offsets = {o["partition"]: o for o in d["offsets"]}
    assert (offsets[0]["committed_offset"], offsets[0]["log_end_offset"], offsets[0]["lag"]) == (2, 5, 3)
    assert offsets[0]["lag_seconds"] >= 0 and offsets[1]["lag_seconds"] == 0
    assert d["lag"] == 3

    status, plan = api.post(f"/api/v1/groups/{g}/offsets", {"to": "earliest", "dry_run": True})
    assert status == 200 and plan["dry_run"] is True
    assert sorted((c["partition"], c["current_offset"], c["new_offset"]) for c in plan["changes"]) == [(0, 2, 0), (1, 5, 0)]
    assert api.get(f"/api/v1/groups/{g}")[1]["lag"] == 3, "a dry run changes nothing"
    status, done = api.post(f"/api/v1/groups/{g}/offsets", {"to": {"offset": 4}, "topic": t, "partitions": [0]})
    assert [(c["partition"], c["new_offset"]) for c in done["changes"]] == [(0, 4)]
    assert api.get(f"/api/v1/groups/{g}")[1]["lag"] == 1
    status, err = api.post(f"/api/v1/groups/{g}/offsets", {"to": "sideways"})
    assert status == 400
    status, err = api.post(f"/api/v1/groups/{g}/offsets", {"to": "latest", "partitions": [0]})
    assert status == 400 and "topic" in err["message"]

    # A live member blocks resets and deletion.
    live = KafkaConsumer(t, bootstrap_servers=fjord.bootstrap, group_id=g, enable_auto_commit=False)
    deadline = time.time() + 30
    while not live.assignment() and time.time() < deadline:
        live.poll(timeout_ms=200)
    status, d = api.get(f"/api/v1/groups/{g}")
    assert d["state"] == "Stable" and len(d["members"]) == 1
    assert sorted(a["topic"] for a in d["members"][0]["assignment"]) == [t]
    status, err = api.post(f"/api/v1/groups/{g}/offsets", {"to": "latest"})
    assert (status, err["code"]) == (409, "group_not_empty")
    status, err = api.call("DELETE", f"/api/v1/groups/{g}")
    assert (status, err["code"]) == (409, "group_not_empty")
    live.close()

    deadline = time.time() + 30
    while api.call("DELETE", f"/api/v1/groups/{g}")[0] != 204:
        assert time.time() < deadline, "the group should become deletable once its member left"
        time.sleep(0.2)
    assert api.get(f"/api/v1/groups/{g}")[0] == 404
    assert all(x["name"] != g for x in api.get("/api/v1/groups")[1]["groups"])
