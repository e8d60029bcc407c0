"""kafka-python (pure Python client) against a real Fjord broker."""

import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from kafka.protocol.consumer import OffsetSpec

from fjord_harness import port_is_free, wait_until


def admin_for(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fjord-tests-admin", request_timeout_ms=10000)


@pytest.fixture
def admin(bootstrap):
    a = admin_for(bootstrap)
    yield a
    a.close()


def consume(bootstrap, topic, expected, timeout=15, **config):
    """Reads `expected` records from the start of `topic` (all partitions)."""
    config.setdefault("auto_offset_reset", "earliest")
    config.setdefault("enable_auto_commit", False)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **config)
    try:
        if config.get("group_id"):
            consumer.subscribe([topic])
        else:
            partitions = wait_until(lambda: consumer.partitions_for_topic(topic), 10, message=f"{topic} metadata")
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            consumer.seek_to_beginning()
        records = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # Nothing beyond what was produced.
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def assigned_partitions(member: dict) -> list:
    """(topic, partition) pairs of a member as kafka-python's
    KafkaAdminClient.describe_groups() decodes them."""
    assignment = member.get("member_assignment") or {}
    return [(t["topic"], p) for t in assignment.get("assigned_partitions", []) for p in t["partitions"]]


def create_topic(admin, name, partitions=1, configs=None):
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}})
    admin.wait_for_topics([name])


# ---------------------------------------------------------------------------
# The README example of kafka-python, verbatim, on localhost:9092.
# ---------------------------------------------------------------------------

PRODUCER_SCRIPT = """\
from kafka import KafkaProducer
producer = KafkaProducer(bootstrap_servers='localhost:9092'); producer.send('hello', b'Hello World!'); producer.flush(); producer.close()
"""

CONSUMER_SCRIPT = """\
from kafka import KafkaConsumer
consumer = KafkaConsumer('hello', group_id='test_group', bootstrap_servers='localhost:9092')
for message in consumer: print(f"Received {message.value.decode('utf-8')}")
"""


def test_readme_hello_world_on_9092(fjord_factory, tmp_path):
    if not port_is_free(9092):
        pytest.skip("port 9092 is in use on this machine; the unmodified example hardcodes localhost:9092")
    server = fjord_factory(kafka_port=9092)
    assert server.bootstrap.endswith(":9092")
    (tmp_path / "producer.py").write_text(PRODUCER_SCRIPT)
    (tmp_path / "consumer.py").write_text(CONSUMER_SCRIPT)

    # -u: unbuffered stdout, so each print reaches us as it happens.
    consumer = subprocess.Popen(
        [sys.executable, "-u", str(tmp_path / "consumer.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(consumer.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        admin = admin_for("127.0.0.1:9092")
        try:

            def stable_with_assignment():
                if consumer.poll() is not None:
                    raise AssertionError(f"consumer script exited: {consumer.stderr.read()}")
                group = admin.describe_groups(["test_group"]).get("test_group") or {}
                members = group.get("members") or []
                assigned = [(tp, m["member_id"]) for m in members for tp in assigned_partitions(m)]
                return group.get("group_state") == "Stable" and assigned == [(("hello", 0), members[0]["member_id"])]

            wait_until(stable_with_assignment, 15, 0.2, "group test_group Stable with hello-0 assigned")
        finally:
            admin.close()

        for _ in range(3):
            subprocess.run([sys.executable, str(tmp_path / "producer.py")], check=True, timeout=30)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "Received Hello World!\n" not in lines:
                time.sleep(0.1)
            if "Received Hello World!\n" in lines:
                break
        assert "Received Hello World!\n" in lines, f"consumer printed {lines!r}"
    finally:
        consumer.terminate()
        consumer.wait(10)


# ---------------------------------------------------------------------------
# Producing and consuming
# ---------------------------------------------------------------------------


def test_keys_and_headers_roundtrip_with_per_key_order(bootstrap, admin, unique):
    topic = unique("topic")
    create_topic(admin, topic, partitions=3)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    sent = []
    for i in range(60):
        key = f"key-{i % 6}".encode()
        headers = [("seq", str(i).encode()), ("origin", b"kafka-python"), ("empty", b"")]
        value = f"value-{i}".encode()
        meta = producer.send(topic, key=key, value=value, headers=headers).get(timeout=10)
        sent.append((key, value, headers, meta.partition, meta.offset))
    producer.close()

    records = consume(bootstrap, topic, 60)
    assert len(records) == 60
    by_key = defaultdict(list)
    partitions_of_key = defaultdict(set)
    for r in records:
        by_key[r.key].append(r)
        partitions_of_key[r.key].add(r.partition)
    # Same key -> same partition, and the partition the producer was told.
    for key, value, headers, partition, offset in sent:
        assert partitions_of_key[key] == {partition}
    assert len({p for ps in partitions_of_key.values() for p in ps}) > 1, "6 keys all hashed to one partition"
    # Order per key preserved, headers and values intact.
    for key, rs in by_key.items():
        expected = [(v, h) for k, v, h, _, _ in sent if k == key]
        assert [(r.value, list(r.headers)) for r in rs] == expected
        assert [r.offset for r in rs] == sorted(r.offset for r in rs)
    # Offsets reported at produce time are the ones records are read at.
    at = {(r.partition, r.offset): r.value for r in records}
    for key, value, _, partition, offset in sent:
        assert at[(partition, offset)] == value


def test_idempotent_producer_exactly_once(bootstrap, admin, unique):
    topic = unique("topic")
    create_topic(admin, topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, max_in_flight_requests_per_connection=5)
    assert producer.config["enable_idempotence"] is True, "kafka-python 3 enables idempotence by default"
    futures = [producer.send(topic, key=str(i % 4).encode(), value=f"m-{i}".encode()) for i in range(500)]
    producer.flush(timeout=20)
    metas = [f.get(timeout=1) for f in futures]
    pid = producer._transaction_manager.producer_id_and_epoch
    assert pid.producer_id >= 0, f"no producer id from InitProducerId: {pid}"
    producer.close()

    records = consume(bootstrap, topic, 500)
    values = [r.value for r in records]
    assert len(values) == 500
    assert set(values) == {f"m-{i}".encode() for i in range(500)}
    # Each (partition, offset) the producer saw holds a distinct record: no
    # gaps, no duplicates written by retries.
    for p in (0, 1):
        offsets = sorted(m.offset for m in metas if m.partition == p)
        assert offsets == list(range(len(offsets)))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_roundtrip(fjord, bootstrap, admin, unique, codec):
    topic = unique(codec)
    create_topic(admin, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=50, batch_size=1 << 20)
    payloads = [(f"record {i} ".encode() * 200) + bytes([i % 256]) for i in range(100)]
    for i, p in enumerate(payloads):
        producer.send(topic, key=str(i).encode(), value=p, headers=[("i", str(i).encode())])
    producer.flush(timeout=20)
    producer.close()
    raw = sum(len(p) for p in payloads)

    records = consume(bootstrap, topic, 100)
    assert [r.value for r in records] == payloads
    assert [r.key for r in records] == [str(i).encode() for i in range(100)]
    assert [r.headers for r in records] == [[("i", str(i).encode())] for i in range(100)]
    # The broker stored the batches compressed, as sent.
    stored = fjord.topic_info(topic)["partitions"][0]["size_bytes"]
    assert stored < raw / 5, f"{codec}: {stored} bytes on disk for {raw} bytes of payload"


# ---------------------------------------------------------------------------
# Admin
# ---------------------------------------------------------------------------


def describe_topic_config(admin, topic):
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    return {k: v["value"] for k, v in result["topic"][topic].items()}


def test_admin_topics_configs_partitions_records(bootstrap, admin, unique):
    topic = unique("topic")
    # validate_only creates nothing.
    admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}}, validate_only=True)
    assert topic not in admin.list_topics()

    result = admin.create_topics(
        {topic: {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "3600000"}}}
    )
    assert result["topics"][0]["error_code"] == 0
    admin.wait_for_topics([topic])
    assert topic in admin.list_topics()
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})

    # describe_configs shows the override; incremental alter changes it.
    assert describe_topic_config(admin, topic)["retention.ms"] == "3600000"
    admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "7200000", "max.message.bytes": "500000"})],
        incremental=True,
    )
    after = describe_topic_config(admin, topic)
    assert after["retention.ms"] == "7200000"
    assert after["max.message.bytes"] == "500000"
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
    assert {"retention.ms", "max.message.bytes"} <= set(modified)
    admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": ("DELETE", None)})], incremental=True
    )
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
    assert "max.message.bytes" not in modified and "retention.ms" in modified

    # create_partitions: 2 -> 4, visible in metadata and writable.
    admin.create_partitions({topic: 4})
    wait_until(
        lambda: len(admin.describe_topics([topic])[0]["partitions"]) == 4, 10, message="4 partitions in metadata"
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(10):
        producer.send(topic, value=f"v{i}".encode(), partition=3)
    producer.flush()
    producer.close()

    # delete_records moves the log start offset.
    tp = TopicPartition(topic, 3)
    admin.delete_records({tp: 6})
    earliest = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST})[tp].offset
    latest = admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset
    assert (earliest, latest) == (6, 10)
    records = consume(bootstrap, topic, 4)
    assert sorted(r.value for r in records if r.partition == 3) == [b"v6", b"v7", b"v8", b"v9"]

    # delete_topics removes it.
    admin.delete_topics([topic])
    wait_until(lambda: topic not in admin.list_topics(), 10, message="topic gone")
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([topic])


def test_admin_consumer_groups(bootstrap, admin, unique):
    topic, group = unique("topic"), unique("group")
    create_topic(admin, topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(10):
        producer.send(topic, value=b"x", partition=i % 2)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    got = 0
    deadline = time.monotonic() + 15
    while got < 10 and time.monotonic() < deadline:
        got += sum(len(b) for b in consumer.poll(timeout_ms=200).values())
    assert got == 10
    consumer.commit()

    listed = {g["group_id"]: g for g in admin.list_groups()}
    assert group in listed
    assert listed[group]["protocol_type"] == "consumer"
    described = admin.describe_groups([group])[group]
    assert described["error"] is None
    assert described["group_state"] == "Stable"
    assert len(described["members"]) == 1
    member = described["members"][0]
    assert sorted(assigned_partitions(member)) == [(topic, 0), (topic, 1)]
    offsets = admin.list_group_offsets({group: None})[group]
    assert {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic} == {0: 5, 1: 5}
    consumer.close()

    wait_until(lambda: admin.describe_groups([group])[group]["group_state"] == "Empty", 10, message="group Empty")
    assert admin.delete_groups([group]) == {group: "OK"}
    assert group not in {g["group_id"] for g in admin.list_groups()}
    assert not admin.list_group_offsets({group: None})[group]


def test_list_offsets_earliest_latest_and_by_time(bootstrap, admin, unique):
    topic = unique("topic")
    create_topic(admin, topic, partitions=1)
    base = int(time.time() * 1000) - 100_000
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(10):
        # Timestamps 1 s apart, produced one batch each.
        producer.send(topic, value=f"v{i}".encode(), timestamp_ms=base + i * 1000).get(timeout=10)
    producer.close()

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: 10}
        found = consumer.offsets_for_times({tp: base + 3000})[tp]
        assert (found.offset, found.timestamp) == (3, base + 3000)
        # Between two records: the next one.
        found = consumer.offsets_for_times({tp: base + 4500})[tp]
        assert (found.offset, found.timestamp) == (5, base + 5000)
        # Before everything: the first; after everything: none.
        assert consumer.offsets_for_times({tp: 0})[tp].offset == 0
        assert consumer.offsets_for_times({tp: base + 60_000})[tp] is None
        # Reading from the looked-up offset yields that record first.
        consumer.assign([tp])
        consumer.seek(tp, consumer.offsets_for_times({tp: base + 7000})[tp].offset)
        first = wait_until(lambda: consumer.poll(timeout_ms=200).get(tp), 10, message="records")
        assert first[0].value == b"v7" and first[0].timestamp == base + 7000
    finally:
        consumer.close()
    maxts = admin.list_partition_offsets({tp: OffsetSpec.MAX_TIMESTAMP})[tp]
    assert (maxts.offset, maxts.timestamp) == (9, base + 9000)


def test_null_key_null_value_and_repeated_headers(bootstrap, admin, unique):
    topic = unique("topic")
    create_topic(admin, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(topic, key=None, value=b"no key").get(timeout=10)
    producer.send(topic, key=b"tombstone", value=None).get(timeout=10)
    producer.send(topic, key=b"k", value=b"", headers=[("dup", b"1"), ("dup", b"2"), ("empty", b"")]).get(timeout=10)
    producer.close()
    records = consume(bootstrap, topic, 3)
    assert [(r.key, r.value) for r in records] == [(None, b"no key"), (b"tombstone", None), (b"k", b"")]
    assert records[2].headers == [("dup", b"1"), ("dup", b"2"), ("empty", b"")]


def test_out_of_range_position_resets_to_log_start(bootstrap, admin, unique):
    """After delete_records, a consumer positioned below the log start gets
    OFFSET_OUT_OF_RANGE and auto_offset_reset=earliest moves it to the new
    log start."""
    topic = unique("topic")
    create_topic(admin, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(10):
        producer.send(topic, value=f"v{i}".encode())
    producer.close()
    tp = TopicPartition(topic, 0)
    admin.delete_records({tp: 5})
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 2)
        records = []
        deadline = time.monotonic() + 10
        while len(records) < 5 and time.monotonic() < deadline:
            records.extend(consumer.poll(timeout_ms=200).get(tp, []))
        assert [(r.offset, r.value) for r in records] == [(i, f"v{i}".encode()) for i in range(5, 10)]
        # Past the end is out of range too; latest would be 10.
        consumer.seek(tp, 50)
        consumer.poll(timeout_ms=500)
        assert consumer.position(tp) in (5, 10)  # reset (earliest=5) rather than stuck at 50
    finally:
        consumer.close()


def test_offsets_only_group_commit_with_metadata(bootstrap, admin, unique):
    """A consumer that assign()s and commits (no group membership): offsets
    with metadata are stored, read back, and the group is listed as Empty."""
    topic, group = unique("topic"), unique("group")
    create_topic(admin, topic, partitions=2)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        consumer.assign([tp0, tp1])
        consumer.commit({tp0: OffsetAndMetadata(7, "seven", -1), tp1: OffsetAndMetadata(0, "", -1)})
        assert consumer.committed(tp0) == 7
        assert consumer.committed(tp0, metadata=True).metadata == "seven"
        assert consumer.committed(tp1) == 0
    finally:
        consumer.close()
    offsets = admin.list_group_offsets({group: None})[group]
    assert {tp: (o.offset, o.metadata) for tp, o in offsets.items()} == {tp0: (7, "seven"), tp1: (0, "")}
    listed = {g["group_id"]: g for g in admin.list_groups()}
    assert listed[group]["group_state"] == "Empty"
    assert admin.describe_groups([group])[group]["group_state"] == "Empty"
