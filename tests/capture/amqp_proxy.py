#!/usr/bin/env python3
"""A recording proxy for AMQP 0-9-1: forwards one port to a broker and
writes every frame a client sends as hex, one file per frame, named
<prefix>_<class>_<method>_<n>.hex (method frames), <prefix>_header_<n>.hex
and <prefix>_body_<n>.hex, into OUT_DIR. Used to capture the golden frames
in crates/amqp-codec/tests/golden from real clients:

    amqp_proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT OUT_DIR PREFIX

Point the client at LISTEN_PORT. The 8-byte protocol header is skipped.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recording import run, save  # noqa: E402


def key_of(prefix, frame):
    kind = frame[0]
    if kind == 1:
        cls, meth = struct.unpack(">HH", frame[7:11])
        return f"{prefix}_{cls}_{meth}"
    if kind == 2:
        return f"{prefix}_header"
    if kind == 3:
        return f"{prefix}_body"
    return None


def frames():
    """A connection's splitter: the 8-byte protocol header is skipped, then
    frames of type(1) channel(2) size(4) payload frame-end(1)."""
    started = False

    def take(buf):
        nonlocal started
        if not started:
            if len(buf) < 8:
                return None, buf
            buf, started = buf[8:], True
        if len(buf) < 7:
            return None, buf
        (n,) = struct.unpack(">I", buf[3:7])
        if len(buf) < 8 + n:
            return None, buf
        return buf[: 8 + n], buf[8 + n :]

    return take


if __name__ == "__main__":
    out_dir, prefix = sys.argv[3], sys.argv[4]

    def record(frame):
        key = key_of(prefix, frame)
        if key is not None:
            save(out_dir, key, frame)

    run(int(sys.argv[1]), sys.argv[2], out_dir, frames, record)
