#!/usr/bin/env python3
"""A recording proxy for RocketMQ remoting: forwards one port to a broker and
writes every request frame a client sends as hex, one file per frame, named
<language>_<code>_<n>.hex, into OUT_DIR. Used to capture the golden frames in
crates/rocketmq-codec/tests/golden from real clients:

    remoting_proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT OUT_DIR

Point the client (or Fjord's advertised broker address) at LISTEN_PORT.
"""
import asyncio
import json
import os
import struct
import sys

LANGS = ["JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP", "OMS", "RUST"]
counts = {}


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
    key = f"{str(lang).lower()}_{code}"
    counts[key] = counts.get(key, 0) + 1
    with open(os.path.join(out_dir, f"{key}_{counts[key]}.hex"), "w") as f:
        f.write(frame.hex() + "\n")


async def pump(reader, writer, out_dir=None):
    buf = b""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            if out_dir is None:
                continue
            buf += data
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if len(buf) < 4 + n:
                    break
                record(out_dir, buf[: 4 + n])
                buf = buf[4 + n :]
    finally:
        writer.close()


async def main(port, target, out_dir):
    host, tport = target.rsplit(":", 1)

    async def handle(cr, cw):
        sr, sw = await asyncio.open_connection(host, int(tport))
        await asyncio.gather(pump(cr, sw, out_dir), pump(sr, cw), return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    os.makedirs(sys.argv[3], exist_ok=True)
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
