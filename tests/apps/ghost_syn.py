#!/usr/bin/env python3
"""Sends one TCP SYN to DST:PORT from SRC, an address no host has, through a raw socket: the
listener's kernel answers with a SYN-ACK nobody receives (its next hop does not answer ARP), so
the handshake stays open there (TCP_NEW_SYN_RECV) for a minute of SYN-ACK retransmissions.

usage: ghost_syn.py SRC DST PORT SPORT
"""
import socket, struct, sys

src, dst, port, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


s, d = socket.inet_aton(src), socket.inet_aton(dst)
# MSS 1460, then NOPs to a multiple of 4
opts = struct.pack("!BBH", 2, 4, 1460)
tcp = struct.pack("!HHIIBBHHH", sport, port, 0x12345678, 0, (5 + len(opts) // 4) << 4, 0x02, 64240, 0, 0) + opts
tcp = tcp[:16] + struct.pack("!H", csum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, s, d)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
r.sendto(ip + tcp, (dst, 0))
print("sent", flush=True)
