"""A real uvloop line server for stress tests, with a per-connection spool file.

Each connection gets a spool file (opened at connect and unlinked at once, so
nothing is left behind; the request is written to it); each request line is
answered "200 OK". With --leaky it leaks on ONE error path: when the client
resets the connection (connection_lost with an error), the spool file is never
closed. Clean closes, truncated requests and slow
clients close it. The healthy version closes it on every path.

Prints its port once ready; runs until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import cast

import uvloop

LEAKY = "--leaky" in sys.argv
SPOOL = os.path.join(tempfile.gettempdir(), f"fdguard-spool-{os.getpid()}")
kept: list[object] = []


class Handler(asyncio.Protocol):
    n = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        Handler.n += 1
        path = f"{SPOOL}-{Handler.n}"
        self.spool = open(path, "wb")  # noqa: SIM115 - lives as long as the connection
        os.unlink(path)
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.spool.write(data)
        self.buf += data
        if b"\n" in self.buf:
            self.buf = b""
            self.transport.write(b"200 OK\n")

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and LEAKY:
            kept.append(self.spool)  # the bug: a reset connection's spool stays open
            return
        self.spool.close()


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
