#!/usr/bin/env python3
"""A server whose first connections arrive before it first accepts: it sets its listener up
(options, bind, listen), prints "listening", sleeps, then accepts N connections one after the
other and answers each with the sha256 of everything it sent (read to EOF). Under ustack the
listener is taken into the stack at the first accept, while the early connections sit in the
kernel's accept queue with data still arriving.

With "dup", the listener is duplicated and the original closed before the first accept: the
copy, a candidate too, is what the stack takes.

usage: adopt_server.py PORT N SLEEP_S [dup]
"""
import hashlib, socket, struct, sys, time

port, n, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 20, 0))
l.bind(("0.0.0.0", port))
l.listen(64)
if len(sys.argv) > 4 and sys.argv[4] == "dup":
    d = l.dup()
    l.close()
    l = d
print("listening", flush=True)
time.sleep(pause)
for _ in range(n):
    c, _ = l.accept()
    h = hashlib.sha256()
    while True:
        d = c.recv(65536)
        if not d:
            break
        h.update(d)
    c.sendall(h.hexdigest().encode())
    c.close()
print("served", n, flush=True)
time.sleep(60)  # the test reads its counters, then stops it
