"""A real uvloop HTTP server for `fdguard guard` tests that leaks one fd every LEAK_EVERY requests.

Under fdguard guard it takes its listening socket the systemd way (LISTEN_FDS,
LISTEN_PID, fd 3) with `loop.create_server(proto, sock=socket.socket(fileno=3))`
and says it is ready with an sd_notify datagram (READY=1) to $NOTIFY_SOCKET.
Alone it listens on 127.0.0.1:<argv[1] or a free port> and prints the port.

On SIGTERM it drains like the Node server next to it: stop accepting, answer
requests still arriving on open connections with `Connection: close`, close
connections idle for DRAIN_IDLE_MS, exit when none is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time

import uvloop

LEAK_EVERY = int(os.environ.get("LEAK_EVERY", "1"))
IDLE_CLOSE = int(os.environ.get("DRAIN_IDLE_MS", "1000")) / 1000.0
leaked: list[int] = []
conns: set[Http] = set()
stop = asyncio.Event()  # set once draining is over (the loop binds it on first use)
state = {"served": 0, "draining": False}


class Http(asyncio.Protocol):
    """Just enough HTTP/1.1: requests without bodies, keep-alive, pipelining."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""
        self.last = time.monotonic()
        conns.add(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.respond()
        self.last = time.monotonic()

    def respond(self) -> None:
        state["served"] += 1
        status, body = "200 OK", f"ok {os.getpid()} {state['served']}\n"
        if LEAK_EVERY > 0 and state["served"] % LEAK_EVERY == 0:
            try:
                leaked.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as err:
                status, body = "500 Internal Server Error", f"leak failed: {err.strerror}\n"
        close = state["draining"]
        head = (
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        self.transport.write(head.encode() + body.encode())
        if close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        conns.discard(self)
        if state["draining"] and not conns:
            stop.set()


def notify(msg: bytes) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    addr = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(msg, addr)


async def main() -> None:
    loop = asyncio.get_running_loop()
    # LISTEN_PID: this process, or a wrapper (sh -c) that started it without exec.
    listen_pid = os.environ.get("LISTEN_PID")
    inherited = os.environ.get("LISTEN_FDS") and listen_pid in (str(os.getpid()),
                                                                 str(os.getppid()))
    if inherited:
        sock = socket.socket(fileno=3)
        server = await loop.create_server(Http, sock=sock, backlog=1024)
    else:
        port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
        server = await loop.create_server(Http, "127.0.0.1", port, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)

    def drain() -> None:
        state["draining"] = True
        server.close()
        if not conns:
            stop.set()

    loop.add_signal_handler(signal.SIGTERM, drain)
    notify(b"READY=1\nMAINPID=%d" % os.getpid())
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), IDLE_CLOSE / 4)
        if state["draining"]:
            now = time.monotonic()
            for c in list(conns):
                if now - c.last >= IDLE_CLOSE:
                    c.transport.close()


uvloop.run(main())
