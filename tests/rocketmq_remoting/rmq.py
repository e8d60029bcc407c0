"""Small helpers around the C++ client's Python wrapper."""

import threading
import time

from rocketmq.client import ConsumeStatus, Message, Producer, PushConsumer


def producer(namesrv: str, group: str) -> Producer:
    p = Producer(group)
    p.set_namesrv_addr(namesrv)
    p.set_timeout(5000)
    p.start()
    return p


def message(topic: str, body: bytes, tags: str | None = None, keys: str | None = None, props: dict | None = None):
    m = Message(topic)
    m.set_body(body)
    if tags:
        m.set_tags(tags)
    if keys:
        m.set_keys(keys)
    for k, v in (props or {}).items():
        m.set_property(k, v)
    return m


class Collector:
    """A push consumer that records what it receives."""

    def __init__(self, namesrv, group, topic, expression="*", orderly=False, model=None, instance=None, on_message=None):
        kwargs = {"orderly": orderly}
        if model is not None:
            kwargs["message_model"] = model
        self.consumer = PushConsumer(group, **kwargs)
        self.consumer.set_namesrv_addr(namesrv)
        if instance:
            self.consumer.set_instance_name(instance)
        self.lock = threading.Lock()
        self.received = []
        self.on_message = on_message

        def cb(msg):
            rec = {
                "topic": msg.topic,
                "tags": msg.tags.decode(),
                "keys": msg.keys.decode(),
                "body": msg.body,
                "id": msg.id,
                "queue_id": msg.queue_id,
                "queue_offset": msg.queue_offset,
                "reconsume_times": msg.reconsume_times,
                "props": msg,
                "at": time.monotonic(),
            }
            status = self.on_message(rec) if self.on_message else ConsumeStatus.CONSUME_SUCCESS
            rec.pop("props")
            with self.lock:
                self.received.append(rec)
            return status

        self.consumer.subscribe(topic, cb, expression)
        self.consumer.start()

    def wait_for(self, n: int, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.05)
        with self.lock:
            raise AssertionError(f"received {len(self.received)} of {n} messages within {timeout}s: {self.received}")

    def snapshot(self):
        with self.lock:
            return list(self.received)

    def stop(self):
        self.consumer.shutdown()
