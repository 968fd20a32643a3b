#!/usr/bin/env python3
"""asyncio TCP echo server: echoes every byte until the client's EOF, then
closes. Prints "listening" once bound.

usage: echo_server.py PORT
"""
import asyncio, sys


async def handle(reader, writer):
    try:
        while True:
            d = await reader.read(65536)
            if not d:
                break
            writer.write(d)
            await writer.drain()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except Exception:
            pass


async def main():
    srv = await asyncio.start_server(handle, "0.0.0.0", int(sys.argv[1]), backlog=512)
    print("listening", flush=True)
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
