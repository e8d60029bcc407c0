#!/usr/bin/env python3
"""A recording proxy for RocketMQ remoting: forwards one port to a broker and
writes every request frame a client sends as hex, one file per frame, named
<language>_<code>_<n>.hex, into OUT_DIR. Used to capture the golden frames in
crates/rocketmq-codec/tests/golden from real clients:

    remoting_proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT OUT_DIR

Point the client (or Fjord's advertised broker address) at LISTEN_PORT.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recording import length_prefixed, run, save  # noqa: E402

LANGS = ["JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP", "OMS", "RUST"]


def record(out_dir, frame):
    (header_word,) = struct.unpack(">I", frame[4:8])
    header_len = header_word & 0xFFFFFF
    header = frame[8 : 8 + header_len]
    try:
        h = json.loads(header)
        code, lang = h.get("code"), h.get("language", "OTHER")
        if h.get("flag", 0) & 1:  # a response to a broker-initiated request
            return
    except ValueError:  # ROCKETMQ binary header
        code, lang = struct.unpack(">h", header[:2])[0], LANGS[header[2]] if header[2] < len(LANGS) else "OTHER"
    save(out_dir, f"{str(lang).lower()}_{code}", frame)


if __name__ == "__main__":
    out_dir = sys.argv[3]
    run(int(sys.argv[1]), sys.argv[2], out_dir, lambda: length_prefixed, lambda frame: record(out_dir, frame))
