#!/usr/bin/env python3
"""UDP over IPv6, one datagram at a time.

usage: udp6_echo.py server PORT
       udp6_echo.py client HOST PORT COUNT SIZE

server: an AF_INET6 socket on [::]:PORT (dual-stack) echoes every datagram to its sender;
prints "listening" once bound.
client: sends COUNT datagrams of SIZE random bytes (the first 4 the sequence number) to
HOST:PORT, each after the echo of the one before (resent after 200 ms without it, at most 20
times), and checks each echo byte for byte. Prints one JSON line: sent, echoed, resent, sha256
of what was sent and of what came back; exit 1 unless every echo came back intact.
"""
import hashlib, json, os, socket, sys


def server(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    print("listening", flush=True)
    while True:
        d, a = s.recvfrom(65536)
        s.sendto(d, a)


def client(host, port, count, size):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    to = socket.getaddrinfo(host, port, socket.AF_INET6, socket.SOCK_DGRAM)[0][4]
    hs, hr = hashlib.sha256(), hashlib.sha256()
    echoed = resent = 0
    for i in range(count):
        d = i.to_bytes(4, "big") + os.urandom(size - 4)
        hs.update(d)
        for attempt in range(21):
            if attempt:
                resent += 1
            s.sendto(d, to)
            try:
                while True:
                    got, _ = s.recvfrom(65536)
                    if got[:4] == d[:4]:  # an older echo (of a resent datagram) is skipped
                        break
            except socket.timeout:
                continue
            if got == d:
                echoed += 1
                hr.update(got)
            break
    r = {"sent": count, "echoed": echoed, "resent": resent, "sha_sent": hs.hexdigest(), "sha_echoed": hr.hexdigest()}
    print(json.dumps(r), flush=True)
    sys.exit(0 if echoed == count and r["sha_sent"] == r["sha_echoed"] else 1)


if sys.argv[1] == "server":
    server(int(sys.argv[2]))
else:
    client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
