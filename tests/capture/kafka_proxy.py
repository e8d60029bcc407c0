#!/usr/bin/env python3
"""A recording proxy for the Kafka protocol: forwards one port to a broker and
writes every request frame a client sends as hex (size prefix included), one
file per frame, named <client>_<api key>_v<version>_<n>.hex, into OUT_DIR.
Used to capture the golden frames in crates/kafka-codec/tests/golden from
real clients:

    kafka_proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT OUT_DIR CLIENT

Run the broker with its Kafka listener advertised at the proxy
(FJORD_LISTENERS__KAFKA__ADVERTISED=127.0.0.1:LISTEN_PORT), so that clients
keep talking through it after their first Metadata request.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recording import length_prefixed, run, save  # noqa: E402

if __name__ == "__main__":
    port, target, out_dir, client = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

    def record(frame):
        api_key, version = struct.unpack(">hh", frame[4:8])
        save(out_dir, f"{client}_{api_key}_v{version}", frame)

    run(port, target, out_dir, lambda: length_prefixed, record)
