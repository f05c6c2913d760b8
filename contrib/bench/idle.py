#!/usr/bin/env python3
"""Holds N logged-in, idle client connections open (md5 or trust auth) for make bench's
memory line: prints "ready <logged-in>" once they are all in, then waits for stdin to
close. Plain sockets and hashlib: nothing to install.

usage: idle.py HOST PORT USER PASSWORD DATABASE N
"""

import hashlib
import socket
import struct
import sys


def startup(user, database):
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", database)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def read_msg(sock, buf):
    while len(buf) < 5:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed during login")
        buf += chunk
    tag = buf[0:1]
    length = struct.unpack("!I", buf[1:5])[0]
    while len(buf) < 1 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed during login")
        buf += chunk
    return tag, buf[5 : 1 + length], buf[1 + length :]


def login(host, port, user, password, database):
    # A pooler out of descriptors may leave a connection unanswered: count it as failed.
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(startup(user, database))
    buf = b""
    while True:
        tag, body, buf = read_msg(s, buf)
        if tag == b"R":
            code = struct.unpack("!I", body[:4])[0]
            if code == 5:
                salt = body[4:8]
                inner = hashlib.md5((password + user).encode()).hexdigest()
                outer = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
                msg = outer.encode() + b"\0"
                s.sendall(b"p" + struct.pack("!I", len(msg) + 4) + msg)
            elif code != 0:
                raise ConnectionError(f"unsupported auth request {code}")
        elif tag == b"E":
            raise ConnectionError(body.decode(errors="replace"))
        elif tag == b"Z":
            s.settimeout(None)
            return s


def main():
    host, port, user, password, database, n = sys.argv[1:7]
    conns = []
    failed = 0
    for _ in range(int(n)):
        try:
            conns.append(login(host, int(port), user, password, database))
        except (OSError, ConnectionError) as e:
            failed += 1
            if failed == 1:
                print(f"login failed: {e}", file=sys.stderr)
    print(f"ready {len(conns)}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
