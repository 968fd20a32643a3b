#!/usr/bin/env python3
"""memcached text-protocol data check over raw sockets, standard library only:
CONNS threads, each with its own connection, SET their share of N keys with
random binary values and flags (batches of noreply-free sets, every STORED
checked), then GET them back with multi-key gets and compare value and flags.
Prints one JSON line; exit 1 on any mismatch or error.

usage: memcache_check.py HOST PORT N CONNS
"""
import json, os, random, socket, sys, threading, time

host, port, n, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
BATCH = 50
tag = b"u%d" % os.getpid()
keys = [tag + b"-k%d" % i for i in range(n)]
vals = [os.urandom(random.randint(1, 4096)) for _ in range(n)]
flags = [random.randint(0, 2**31 - 1) for _ in range(n)]
fails = []
lock = threading.Lock()
barrier = threading.Barrier(conns)
times = {}


def fail(msg):
    with lock:
        fails.append(msg)


def worker(w):
    try:
        s = socket.create_connection((host, port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        mine = list(range(w, n, conns))
        barrier.wait()
        t0 = time.monotonic()
        for b in range(0, len(mine), BATCH):
            idx = mine[b:b + BATCH]
            s.sendall(b"".join(b"set %s %d 0 %d\r\n%s\r\n" % (keys[i], flags[i], len(vals[i]), vals[i]) for i in idx))
            for i in idx:
                line = f.readline()
                if line != b"STORED\r\n":
                    fail("set %s: %r" % (keys[i].decode(), line))
                    if not line:
                        return
        barrier.wait()
        t1 = time.monotonic()
        for b in range(0, len(mine), BATCH):
            idx = mine[b:b + BATCH]
            s.sendall(b"get " + b" ".join(keys[i] for i in idx) + b"\r\n")
            got = {}
            while True:
                line = f.readline()
                if line == b"END\r\n":
                    break
                p = line.split()
                if len(p) != 4 or p[0] != b"VALUE":
                    fail("get: unexpected line %r" % line)
                    return
                d = f.read(int(p[3]) + 2)
                got[p[1]] = (int(p[2]), d[:-2] if d.endswith(b"\r\n") else None)
            for i in idx:
                g = got.get(keys[i])
                if g is None:
                    fail("get %s: missing" % keys[i].decode())
                elif g != (flags[i], vals[i]):
                    fail("get %s: flags %d, %s bytes; want flags %d, %d bytes (content differs)" % (
                        keys[i].decode(), g[0], "?" if g[1] is None else len(g[1]), flags[i], len(vals[i])))
        t2 = time.monotonic()
        with lock:
            times[w] = (t0, t1, t2)
        s.close()
    except Exception as e:
        fail("conn %d: %r" % (w, e))
        barrier.abort()


ths = [threading.Thread(target=worker, args=(w,)) for w in range(conns)]
for t in ths:
    t.start()
for t in ths:
    t.join()
if times:
    t0 = min(v[0] for v in times.values()); t1 = max(v[1] for v in times.values()); t2 = max(v[2] for v in times.values())
    setr, getr = n / max(t1 - t0, 1e-9), n / max(t2 - t1, 1e-9)
else:
    setr = getr = 0
res = {"ok": not fails and len(times) == conns, "keys": n, "conns": conns, "bytes": sum(map(len, vals)),
       "set_ops_s": setr, "get_ops_s": getr, "fails": len(fails)}
print(json.dumps(res))
for x in fails[:20]:
    print("FAIL " + x, file=sys.stderr)
sys.exit(0 if res["ok"] else 1)
