#!/usr/bin/env python3
"""asyncio echo client: CLIENTS concurrent connections, each sends SIZE random
bytes (while reading the echo), half-closes, reads to EOF and compares. Prints
one JSON line; exit 1 unless every echo is byte-identical.

usage: echo_client.py HOST PORT CLIENTS SIZE [TIMEOUT_S]
"""
import asyncio, json, os, sys, time

host, port, clients, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60


async def one(i):
    data = os.urandom(size)
    reader, writer = await asyncio.open_connection(host, port)

    async def send():
        for off in range(0, size, 8192):
            writer.write(data[off:off + 8192])
            await writer.drain()
        writer.write_eof()

    st = asyncio.create_task(send())
    got = bytearray()
    while True:
        d = await reader.read(65536)
        if not d:
            break
        got += d
    await st
    writer.close()
    if bytes(got) != data:
        return "client %d: echo of %d bytes differs: got %d bytes" % (i, size, len(got))
    return None


async def main():
    t0 = time.monotonic()
    res = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(clients)), return_exceptions=True), timeout)
    el = time.monotonic() - t0
    fails = [("client %d: %r" % (i, r)) if isinstance(r, BaseException) else r for i, r in enumerate(res) if r is not None]
    out = {"ok": not fails, "clients": clients, "size": size, "identical": clients - len(fails),
           "elapsed_s": el, "mb_s": 2 * clients * size / el / 1e6}
    print(json.dumps(out))
    for f in fails[:20]:
        print("FAIL " + f, file=sys.stderr)
    return 0 if not fails else 1


try:
    sys.exit(asyncio.run(main()))
except asyncio.TimeoutError:
    print(json.dumps({"ok": False, "error": "timed out after %gs" % timeout}))
    sys.exit(1)
