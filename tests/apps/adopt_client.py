#!/usr/bin/env python3
"""Client of adopt_server.py: EARLY connections at once, each sending SIZE random bytes from a
thread of its own (they wait in the server's accept queue, their data partly in flight), then,
after DELAY_S, LATE connections one after the other. Each compares the sha256 the server answers
with what it sent. Prints "ok EARLY LATE" when every one matched.

usage: adopt_client.py HOST PORT EARLY LATE SIZE DELAY_S
"""
import hashlib, os, socket, sys, threading, time

host, port = sys.argv[1], int(sys.argv[2])
early, late, size, delay = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
bad = []


def one(name):
    data = os.urandom(size)
    s = socket.create_connection((host, port), timeout=60)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        d = s.recv(128)
        if not d:
            break
        got += d
    s.close()
    if got.decode() != hashlib.sha256(data).hexdigest():
        bad.append(f"{name}: server's sha256 {got!r} differs from what was sent")


threads = [threading.Thread(target=one, args=(f"early {i}",)) for i in range(early)]
for t in threads:
    t.start()
time.sleep(delay)
for i in range(late):
    one(f"late {i}")
for t in threads:
    t.join()
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("ok", early, late)
