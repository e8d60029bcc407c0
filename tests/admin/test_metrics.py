"""/metrics parses with Prometheus' own text parser, and its counters move
when real clients make traffic."""

import urllib.request

from kafka import KafkaConsumer, KafkaProducer
from prometheus_client.parser import text_string_to_metric_families


def scrape(fjord) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    with urllib.request.urlopen(f"http://{fjord.http}/metrics", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0.0)


def test_metrics_parse_and_move_with_kafka_traffic(fjord, api, unique):
    t = unique()
    assert api.post("/api/v1/topics", {"name": t, "partitions": 1})[0] == 201
    before = scrape(fjord)
    assert value(before, "fjord_topics") >= 1
    build = [dict(labels) for name, labels in before if name == "fjord_build_info"]
    assert len(build) == 1 and build[0]["version"]

    p = KafkaProducer(bootstrap_servers=fjord.bootstrap, linger_ms=0)
    for i in range(20):
        p.send(t, value=f"v{i}".encode())
    p.flush(timeout=30)
    p.close()
    c = KafkaConsumer(t, bootstrap_servers=fjord.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    got = [m.value for m in c]
    c.close()
    assert len(got) == 20

    after = scrape(fjord)
    assert value(after, "fjord_records_produced_total", topic=t) == 20
    assert value(after, "fjord_produced_bytes_total", topic=t) > 0
    assert value(after, "fjord_records_fetched_total", topic=t) >= 20
    assert value(after, "fjord_fetched_bytes_total", topic=t) > 0
    assert value(after, "fjord_storage_bytes", topic=t) > 0
    assert value(after, "fjord_partitions") >= value(before, "fjord_partitions")
    assert value(after, "fjord_disk_total_bytes") > 0

    # Latency histograms per protocol and API (recorded by the gateways).
    produce_count = value(after, "fjord_request_duration_seconds_count", protocol="kafka", api="Produce")
    assert produce_count - value(before, "fjord_request_duration_seconds_count", protocol="kafka", api="Produce") >= 1
    assert value(after, "fjord_request_duration_seconds_bucket", protocol="kafka", api="Produce", le="+Inf") == produce_count
    assert value(after, "fjord_connections_accepted_total", protocol="kafka") >= 2
    assert value(after, "fjord_request_duration_seconds_count", protocol="http", api="/api/v1/topics") >= 1
    assert value(after, "fjord_fsync_duration_seconds_count") >= value(before, "fjord_fsync_duration_seconds_count")


def test_group_lag_is_exported(fjord, api, unique):
    t, g = unique(), unique("g")
    api.post("/api/v1/topics", {"name": t, "partitions": 1})
    api.post(f"/api/v1/topics/{t}/messages", {"messages": [{"value": str(i)} for i in range(7)]})
    c = KafkaConsumer(bootstrap_servers=fjord.bootstrap, group_id=g, enable_auto_commit=False)
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    c.commit({TopicPartition(t, 0): OffsetAndMetadata(3, "", -1)})
    c.close()
    m = scrape(fjord)
    assert value(m, "fjord_consumer_group_lag", group=g, topic=t) == 4


def test_per_partition_series_only_behind_the_flag(fjord, api, unique, make_api):
    t = unique()
    api.post("/api/v1/topics", {"name": t, "partitions": 2})
    api.post(f"/api/v1/topics/{t}/messages", {"messages": [{"value": "x", "partition": 1}]})
    assert not any(name == "fjord_partition_log_end_offset" for name, _ in scrape(fjord))

    from fjord_fixtures import run_broker

    broker = run_broker("fjord-per-partition-", env={"FJORD_METRICS__PER_PARTITION": "true"})
    other = next(broker)
    try:
        other_api = make_api(other)
        assert other_api.post("/api/v1/topics", {"name": t, "partitions": 2})[0] == 201
        other_api.post(f"/api/v1/topics/{t}/messages", {"messages": [{"value": "x", "partition": 1}] * 3})
        m = scrape(other)
        assert value(m, "fjord_partition_log_end_offset", topic=t, partition="1") == 3
        assert value(m, "fjord_partition_log_end_offset", topic=t, partition="0") == 0
        assert value(m, "fjord_partition_size_bytes", topic=t, partition="1") > 0
    finally:
        next(broker, None)
