"""A uvloop TCP server that leaks accepted sockets on request, for `fdguard trace` tests.

One command per connection (first line): "LEAK" keeps the transport half-open
forever (eof_received returns True and nothing closes it: CLOSE-WAIT, a live
libuv handle owns the fd) and replies "kept"; anything else gets "ok" and a
close. Prints {"port": N} once listening.
"""

from __future__ import annotations

import asyncio
import json

import uvloop

KEPT: list[asyncio.Transport] = []


class Proto(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.keep = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not subclass asyncio.Transport.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if data.startswith(b"LEAK"):
            self.keep = True
            KEPT.append(self.transport)
            self.transport.write(b"kept\n")
        else:
            self.transport.write(b"ok\n")
            self.transport.close()

    def eof_received(self) -> bool:
        # True keeps the transport open after the peer's FIN: the leak under test.
        return self.keep


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Proto, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
