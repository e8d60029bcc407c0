"""The fault-injection checker's pop workload, run by fjord-chaos.

Unmodified RocketMQ 5.x gRPC clients (rocketmq-python-client, from PyPI):
producers sending unique values through every node's gRPC endpoint, and
SimpleConsumers of one group receiving them with an invisible duration
and acking each (per-message acks on Fjord's replicated pop queues).
Every operation is reported as one JSON line on stdout:

    {"e": "send", "p": 0, "v": "pop0:17"}                  about to send
    {"e": "ok", "v": "pop0:17"}                            send answered OK
    {"e": "unsure", "v": "...", "err": "..."}              the send failed
    {"e": "poll", "c": 0, "n": 5}                          receive call 5 starts
    {"e": "read", "c": 0, "n": 5, "v": "...", "r": "..."}  received (receipt r)
    {"e": "acked", "c": 0, "v": "...", "r": "..."}         ack answered OK
    {"e": "ackfail", "c": 0, "v": "...", "err": "..."}     the ack failed (outcome unknown)
    {"e": "stopped"}                                       the producers are done

Commands on stdin: `stop` stops the producers (each finishes its send in
progress); `exit` stops the consumers and ends the program.

    pop_workload.py ENDPOINTS TOPIC GROUP PRODUCERS RATE CONSUMERS INVISIBLE_S
"""

import json
import sys
import threading
import time

from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer

_out = threading.Lock()


def emit(**event):
    line = json.dumps(event)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def config(endpoints):
    return ClientConfiguration(endpoints, Credentials(), request_timeout=5)


def produce(endpoints, topic, k, rate, stop):
    p = Producer(config(endpoints), (topic,))
    p.startup()
    gap = 1.0 / max(rate, 1)
    nxt = time.monotonic()
    seq = 0
    while not stop.is_set():
        nxt += gap
        time.sleep(max(0.0, nxt - time.monotonic()))
        value = f"pop{k}:{seq}"
        seq += 1
        m = Message()
        m.topic = topic
        m.body = value.encode()
        m.keys = value
        emit(e="send", p=k, v=value)
        try:
            p.send(m)
        except Exception as ex:  # the client's own exceptions: timeouts, no route, ...
            emit(e="unsure", v=value, err=f"{type(ex).__name__}: {ex}")
            time.sleep(0.2)
            continue
        emit(e="ok", v=value)
    p.shutdown()


def consume(endpoints, topic, group, c, invisible, done):
    sc = SimpleConsumer(config(endpoints), group, {topic: FilterExpression("*")}, await_duration=2)
    sc.startup()
    n = 0
    while not done.is_set():
        n += 1
        emit(e="poll", c=c, n=n)
        try:
            got = sc.receive(16, invisible)
        except Exception:  # no route, a node down, nothing to receive: poll again
            time.sleep(0.2)
            continue
        for m in got:
            value = m.body.decode()
            emit(e="read", c=c, n=n, v=value, r=m.receipt_handle)
            try:
                sc.ack(m)
            except Exception as ex:  # an ack of unknown outcome: the message may come back
                emit(e="ackfail", c=c, v=value, err=f"{type(ex).__name__}: {ex}")
                continue
            emit(e="acked", c=c, v=value, r=m.receipt_handle)
    sc.shutdown()


def main():
    endpoints, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    producers, rate, consumers, invisible = (int(a) for a in sys.argv[4:8])
    done = threading.Event()
    readers = [threading.Thread(target=consume, args=(endpoints, topic, group, c, invisible, done), daemon=True)
               for c in range(consumers)]
    for t in readers:
        t.start()
    stop = threading.Event()
    writers = [threading.Thread(target=produce, args=(endpoints, topic, k, rate, stop), daemon=True)
               for k in range(producers)]
    for t in writers:
        t.start()
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "stop" and not stop.is_set():
            stop.set()
            for t in writers:
                t.join()
            emit(e="stopped")
        elif cmd == "exit":
            break
    stop.set()
    done.set()
    for t in readers:
        t.join(timeout=10)


if __name__ == "__main__":
    main()
