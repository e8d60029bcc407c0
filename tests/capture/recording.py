"""What the recording proxies share: forward one port to a broker and hand
every complete frame a client sends to a recorder, which writes it as hex,
one file per frame, into OUT_DIR (the golden frames of the codec crates'
tests come from these).
"""
import asyncio
import os
import struct

_counts = {}


def save(out_dir, key, frame):
    """Writes `frame` as hex to OUT_DIR/<key>_<n>.hex (n counts per key)."""
    _counts[key] = _counts.get(key, 0) + 1
    with open(os.path.join(out_dir, f"{key}_{_counts[key]}.hex"), "w") as f:
        f.write(frame.hex() + "\n")


def length_prefixed(buf):
    """Splits one frame with a 4-byte big-endian size prefix (Kafka,
    RocketMQ remoting) off `buf`: (frame with its prefix, rest), or (None,
    buf) while incomplete."""
    if len(buf) < 4:
        return None, buf
    (n,) = struct.unpack(">I", buf[:4])
    if len(buf) < 4 + n:
        return None, buf
    return buf[: 4 + n], buf[4 + n :]


async def _pump(reader, writer, take=None, record=None):
    buf = b""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            if take is None:
                continue
            buf += data
            while True:
                frame, buf = take(buf)
                if frame is None:
                    break
                record(frame)
    finally:
        writer.close()


def run(port, target, out_dir, make_take, record):
    """Listens on 127.0.0.1:`port` and forwards each connection to `target`
    (host:port); `make_take()` gives each connection's frame splitter (a
    function as `length_prefixed`), `record(frame)` gets each frame a client
    sent."""
    os.makedirs(out_dir, exist_ok=True)
    host, tport = target.rsplit(":", 1)

    async def handle(cr, cw):
        sr, sw = await asyncio.open_connection(host, int(tport))
        await asyncio.gather(_pump(cr, sw, make_take(), record), _pump(sr, cw), return_exceptions=True)

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
