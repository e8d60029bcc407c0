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
import asyncio
import os
import struct
import sys

counts = {}


def record(out_dir, client, frame):
    api_key, version = struct.unpack(">hh", frame[4:8])
    key = f"{client}_{api_key}_v{version}"
    counts[key] = counts.get(key, 0) + 1
    with open(os.path.join(out_dir, f"{key}_{counts[key]}.hex"), "w") as f:
        f.write(frame.hex() + "\n")


async def pump(reader, writer, out_dir=None, client=None):
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
                record(out_dir, client, buf[: 4 + n])
                buf = buf[4 + n :]
    finally:
        writer.close()


async def main(port, target, out_dir, client):
    host, tport = target.rsplit(":", 1)

    async def handle(cr, cw):
        sr, sw = await asyncio.open_connection(host, int(tport))
        await asyncio.gather(pump(cr, sw, out_dir, client), pump(sr, cw), return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    os.makedirs(sys.argv[3], exist_ok=True)
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
