"""The fault-injection checker's RocketMQ workload, run by fjord-chaos.

Unmodified RocketMQ 4.x clients (rocketmq-client-cpp through
rocketmq-client-python, from PyPI): producers sending unique values with
`send_sync` through the name servers of every node, and push consumers
(clustering, one group) reading them. Every operation is reported as one
JSON line on stdout:

    {"e": "send", "p": 0, "v": "rmq0:17"}        about to send
    {"e": "ok", "v": "rmq0:17"}                  answered SEND_OK
    {"e": "unsure", "v": "...", "err": "..."}    an error or another status
    {"e": "read", "c": 0, "v": "rmq0:17"}        delivered to consumer 0
    {"e": "stopped"}                             the producers are done

Commands on stdin: `stop` stops the producers (each finishes its send in
progress); `exit` stops the consumers and ends the program.

    rmq_workload.py NAMESRV TOPIC GROUP PRODUCERS RATE CONSUMERS
"""

import json
import sys
import threading
import time

from rocketmq.client import ConsumeStatus, Message, Producer, PushConsumer, SendStatus

_out = threading.Lock()


def emit(**event):
    line = json.dumps(event)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def produce(namesrv, topic, k, rate, stop):
    p = Producer(f"chaos-pg-{k}")
    p.set_namesrv_addr(namesrv)
    p.set_timeout(3000)
    p.start()
    gap = 1.0 / max(rate, 1)
    nxt = time.monotonic()
    seq = 0
    while not stop.is_set():
        nxt += gap
        time.sleep(max(0.0, nxt - time.monotonic()))
        value = f"rmq{k}:{seq}"
        seq += 1
        m = Message(topic)
        m.set_body(value)
        m.set_keys(value)
        emit(e="send", p=k, v=value)
        try:
            r = p.send_sync(m)
        except Exception as ex:  # the client's own exceptions: timeouts, no route, ...
            emit(e="unsure", v=value, err=f"{type(ex).__name__}: {ex}")
            time.sleep(0.2)
            continue
        if r.status == SendStatus.OK:
            emit(e="ok", v=value)
        else:
            emit(e="unsure", v=value, err=f"status {r.status.name}")
    p.shutdown()


def main():
    namesrv, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    producers, rate, consumers = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    started = []
    for c in range(consumers):
        pc = PushConsumer(group)
        pc.set_namesrv_addr(namesrv)
        pc.set_instance_name(f"chaos-{c}")

        def on_message(msg, c=c):
            emit(e="read", c=c, v=msg.body.decode())
            return ConsumeStatus.CONSUME_SUCCESS

        pc.subscribe(topic, on_message)
        pc.start()
        started.append(pc)
    stop = threading.Event()
    threads = [threading.Thread(target=produce, args=(namesrv, topic, k, rate, stop), daemon=True)
               for k in range(producers)]
    for t in threads:
        t.start()
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "stop" and not stop.is_set():
            stop.set()
            for t in threads:
                t.join()
            emit(e="stopped")
        elif cmd == "exit":
            break
    stop.set()
    for pc in started:
        pc.shutdown()


if __name__ == "__main__":
    main()
