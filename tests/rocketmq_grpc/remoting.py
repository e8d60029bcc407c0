"""`mqadmin updateSubGroup` in a few lines: one remoting request (JSON
header) to Fjord's name server port."""

import json
import socket
import struct


def update_sub_group(namesrv: str, group: str, retry_max_times: int = 16, orderly: bool = False):
    host, port = namesrv.rsplit(":", 1)
    header = json.dumps({"code": 200, "flag": 0, "language": "PYTHON", "opaque": 1, "version": 0,
                         "serializeTypeCurrentRPC": "JSON"}).encode()
    body = json.dumps({"groupName": group, "retryMaxTimes": retry_max_times,
                       "consumeMessageOrderly": orderly}).encode()
    frame = struct.pack(">II", 4 + len(header) + len(body), len(header)) + header + body
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(frame)
        (n,) = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
    hlen = struct.unpack(">I", data[:4])[0] & 0xFFFFFF
    resp = json.loads(data[4:4 + hlen])
    assert resp["code"] == 0, resp
