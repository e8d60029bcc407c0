#!/usr/bin/env python3
"""A recording proxy for AMQP 0-9-1: forwards one port to a broker and
writes every frame a client sends as hex, one file per frame, named
<prefix>_<class>_<method>_<n>.hex (method frames), <prefix>_header_<n>.hex
and <prefix>_body_<n>.hex, into OUT_DIR. Used to capture the golden frames
in crates/amqp-codec/tests/golden from real clients:

    amqp_proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT OUT_DIR PREFIX

Point the client at LISTEN_PORT. The 8-byte protocol header is skipped.
"""
import asyncio
import os
import struct
import sys

counts = {}


def record(out_dir, prefix, frame):
    kind = frame[0]
    if kind == 1:
        cls, meth = struct.unpack(">HH", frame[7:11])
        key = f"{prefix}_{cls}_{meth}"
    elif kind == 2:
        key = f"{prefix}_header"
    elif kind == 3:
        key = f"{prefix}_body"
    else:
        return
    counts[key] = counts.get(key, 0) + 1
    with open(os.path.join(out_dir, f"{key}_{counts[key]}.hex"), "w") as f:
        f.write(frame.hex() + "\n")


async def pump(reader, writer, out_dir=None, prefix=""):
    buf, started = b"", out_dir is None
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            if out_dir is None:
                continue
            buf += data
            if not started and len(buf) >= 8:
                buf, started = buf[8:], True
            while started and len(buf) >= 7:
                (n,) = struct.unpack(">I", buf[3:7])
                if len(buf) < 8 + n:
                    break
                record(out_dir, prefix, buf[: 8 + n])
                buf = buf[8 + n :]
    finally:
        writer.close()


async def main(port, target, out_dir, prefix):
    host, tport = target.rsplit(":", 1)

    async def handle(cr, cw):
        sr, sw = await asyncio.open_connection(host, int(tport))
        await asyncio.gather(pump(cr, sw, out_dir, prefix), pump(sr, cw), return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    os.makedirs(sys.argv[3], exist_ok=True)
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
