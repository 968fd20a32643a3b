#!/usr/bin/env python3
"""RESP (redis protocol) data check over a raw socket, no modules beyond the
standard library: SET N keys with random binary values (pipelined in batches),
GET them back and compare byte for byte. Prints one JSON line; exit 1 on any
mismatch or error.

usage: resp_check.py HOST PORT N
"""
import json, os, random, socket, sys, time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BATCH = 100

s = socket.create_connection((host, port), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def reply():
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise EOFError("connection closed mid-reply: %r" % line)
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest
    if t == b"-":
        raise RuntimeError("error reply: %r" % rest)
    if t == b":":
        return int(rest)
    if t == b"$":
        ln = int(rest)
        if ln < 0:
            return None
        d = f.read(ln + 2)
        if len(d) != ln + 2 or d[-2:] != b"\r\n":
            raise EOFError("short bulk reply")
        return d[:-2]
    raise RuntimeError("unexpected reply %r" % line)


prefix = b"ustack:%d:" % os.getpid()
keys = [prefix + b"%d" % i for i in range(n)]
# Binary values, CR LF included: RESP bulk strings are length-framed.
vals = [os.urandom(random.randint(1, 2048)) for _ in range(n)]
fails = []

t0 = time.monotonic()
for i in range(0, n, BATCH):
    s.sendall(b"".join(cmd(b"SET", keys[j], vals[j]) for j in range(i, min(n, i + BATCH))))
    for j in range(i, min(n, i + BATCH)):
        r = reply()
        if r != b"OK":
            fails.append("SET %s: %r" % (keys[j].decode(), r))
t1 = time.monotonic()
for i in range(0, n, BATCH):
    s.sendall(b"".join(cmd(b"GET", keys[j]) for j in range(i, min(n, i + BATCH))))
    for j in range(i, min(n, i + BATCH)):
        r = reply()
        if r != vals[j]:
            fails.append("GET %s: got %s bytes, want %d bytes" % (keys[j].decode(), "nil" if r is None else len(r), len(vals[j])))
t2 = time.monotonic()
s.sendall(cmd(b"DBSIZE"))
dbsize = reply()
s.close()

res = {"ok": not fails and dbsize >= n, "keys": n, "bytes": sum(map(len, vals)), "dbsize": dbsize,
       "set_ops_s": n / (t1 - t0), "get_ops_s": n / (t2 - t1), "fails": len(fails)}
print(json.dumps(res))
for x in fails[:20]:
    print("FAIL " + x, file=sys.stderr)
sys.exit(0 if res["ok"] else 1)
