"""A python `websockets` echo backend, as chat backends are written with it.

Prints {"port": N} once listening, then one {"received": N} line per connection when
it ends: the messages its handler read (each one it tried to echo). Exits when stdin
closes, so it never outlives the test that started it.
"""

import asyncio
import json
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    received = 0
    try:
        async for message in ws:
            received += 1
            await ws.send(message)
    finally:
        print(json.dumps({"received": received}), flush=True)


async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


asyncio.run(main())
