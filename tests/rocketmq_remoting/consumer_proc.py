"""A push consumer in its own process (so a test can kill -9 it): appends
`<body>:<queue_offset>` per message to a file, flushed at once.

    consumer_proc.py NAMESRV GROUP TOPIC OUT [orderly|concurrent] [SLEEP_S]
"""

import signal
import sys
import time

from rocketmq.client import ConsumeStatus, PushConsumer

namesrv, group, topic, out = sys.argv[1:5]
orderly = len(sys.argv) > 5 and sys.argv[5] == "orderly"
pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
f = open(out, "a", buffering=1)


def on_message(msg):
    if pause:
        time.sleep(pause)
    f.write(f"{msg.body.decode()}:{msg.queue_offset}\n")
    f.flush()
    return ConsumeStatus.CONSUME_SUCCESS


c = PushConsumer(group, orderly=orderly)
c.set_namesrv_addr(namesrv)
c.set_thread_count(1)
c.subscribe(topic, on_message)
c.start()
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
while not stop:
    time.sleep(0.1)
c.shutdown()
