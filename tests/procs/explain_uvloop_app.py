"""A real uvloop service in one of the shapes `fdguard explain` must tell apart.

    explain_uvloop_app.py closewait N   keeps N accepted connections open after the
                                        peer hung up (CLOSE-WAIT)
    explain_uvloop_app.py files N       opens N files and never closes them
    explain_uvloop_app.py unowned       loses a socket fd outside any object (detach())
    explain_uvloop_app.py publish N     publishes its own expected fd count N

With FDGUARD_TEST_ASYNCIO=1 it runs on asyncio's own (selector) loop instead.

The first stdout line is {"port", "pid", ...ground truth}; closewait prints a second
line {"closewait": [fds]} once every peer hung up. It runs until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

keep: list[object] = []


def out(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(mode: str, n: int) -> None:
    loop = asyncio.get_running_loop()
    ended: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        keep.append(writer)
        if mode == "closewait":
            await reader.read()  # EOF: the peer hung up; the bug is never closing
            ended.append(writer.get_extra_info("socket").fileno())
            if len(ended) == n:
                out({"closewait": ended})

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    lsock = srv.sockets[0]
    truth: dict[str, object] = {
        "pid": os.getpid(),
        "port": lsock.getsockname()[1],
        "listen_fd": lsock.fileno(),
    }
    if hasattr(loop, "_get_backend_id"):
        truth["epoll_fd"] = loop._get_backend_id()
    else:
        truth["epoll_fd"] = loop._selector.fileno()  # type: ignore[attr-defined]
    uvloop = sys.modules.get("uvloop")
    if uvloop is not None:
        v = uvloop.loop.libuv_get_version()
        truth["uv"] = f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"
        truth["uvloop"] = uvloop.__version__
    if mode == "files":
        files = [open(__file__, "rb") for _ in range(n)]  # noqa: SIM115 - the leak shown
        keep.extend(files)
        truth["files"] = [f.fileno() for f in files]
    elif mode == "unowned":
        truth["leaked"] = socket.socket().detach()  # an fd no object owns any more
    elif mode == "publish":
        import fdguard.agent

        fdguard.agent.publish("db_connections", 2, expected_fds=n)
    out(truth)
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "plain"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if os.environ.get("FDGUARD_TEST_ASYNCIO") == "1":
        asyncio.run(main(mode, n))
    else:
        import uvloop  # only here: the asyncio variant must not load libuv at all

        uvloop.run(main(mode, n))
