"""Admission control in front of a leaking service: cap new connections/s and concurrency.

A loopback TCP proxy: every accepted client connection must be admitted
before it is forwarded to the upstream. Admission takes a token from a token
bucket (`rate` new connections per second, `burst` at once) and a slot of the
concurrency cap (`max_conns` open upstream connections). A connection that
cannot be admitted at once waits in a FIFO queue of at most `queue` entries
for at most `queue_timeout` seconds; beyond either bound it is refused -- by
a TCP reset (the client sees ECONNRESET at once, like a full backlog but
without the SYN retry delays), or, for HTTP services, a `503` with
`Retry-After`.

Why this slows a leak: a service that leaks per connection (or per request on
a fresh connection) leaks at the rate it is handed connections; capping that
rate caps the leak rate, so the service degrades (queued, refused clients)
instead of dying of EMFILE, and the guard's restarts come less often.

Design: asyncio protocols relaying bytes both ways with back-pressure (a
full write buffer pauses reading on the other side), no task per direction;
the client side is not read until it is admitted and connected; the limiter
is a plain object with an injectable clock so its arithmetic is unit-tested
without sockets. uvloop is used when it is importable (it is what the
services under test run on), plain asyncio otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fdguard.errors import UsageError
from fdguard.faults.proxy import abort_with_rst
from fdguard.guard.spec import ListenSpec

REFUSE_MODES = ("reset", "http503")


@dataclass(frozen=True, slots=True)
class ThrottleSpec:
    """The caps. None means no cap of that kind."""

    rate: float | None = None
    burst: int = 1
    max_conns: int | None = None
    queue: int = 0
    queue_timeout: float = 5.0
    refuse: str = "reset"

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise UsageError("--rate must be positive")
        if self.burst < 1:
            raise UsageError("--burst must be at least 1")
        if self.max_conns is not None and self.max_conns < 1:
            raise UsageError("--max-conns must be at least 1")
        if self.queue < 0 or self.queue_timeout < 0:
            raise UsageError("--queue and --queue-timeout must not be negative")
        if self.refuse not in REFUSE_MODES:
            raise UsageError(f"--refuse must be one of {REFUSE_MODES}")


@dataclass
class ThrottleStats:
    """Counters since start (mutable, owned by the proxy's loop)."""

    accepted: int = 0
    admitted: int = 0
    queued: int = 0
    refused_queue_full: int = 0
    refused_timeout: int = 0
    upstream_errors: int = 0
    active: int = 0
    peak_active: int = 0
    peak_queue: int = 0
    wait_total: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "admitted": self.admitted,
            "queued": self.queued,
            "refused": self.refused_queue_full + self.refused_timeout,
            "refused_queue_full": self.refused_queue_full,
            "refused_timeout": self.refused_timeout,
            "upstream_errors": self.upstream_errors,
            "active": self.active,
            "peak_active": self.peak_active,
            "peak_queue": self.peak_queue,
            "mean_queue_wait": self.wait_total / self.queued if self.queued else 0.0,
        }


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; time from `clock`."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.stamp = self.clock()

    def _refill(self) -> None:
        # Saved tokens are capped at `burst` whole tokens, but the fraction of the
        # next one is kept: a scheduler that wakes a little late (an event loop
        # under load always does) must not lose rate. So at most `burst`
        # connections pass at once, and the long-run rate stays `rate`.
        now = self.clock()
        cap = self.burst + 1.0 - 1e-6
        self.tokens = min(cap, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> float:
        """Take a token if there is one and return 0; else return seconds until there is."""
        self._refill()
        # The epsilon absorbs float error of refills (0.1 s * 10/s = 0.9999999...).
        if self.tokens >= 1.0 - 1e-9:
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Limiter:
    """FIFO admission: a token (rate cap) and a slot (concurrency cap), in arrival order."""

    def __init__(self, spec: ThrottleSpec, stats: ThrottleStats,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.stats = stats
        self.clock = clock
        self.bucket = TokenBucket(spec.rate, spec.burst, clock) if spec.rate else None
        self.waiting: deque[asyncio.Future[None]] = deque()
        self._kick: asyncio.Event | None = None
        self._pump: asyncio.Task[None] | None = None

    def _can_enter(self) -> bool:
        cap = self.spec.max_conns
        return cap is None or self.stats.active < cap

    def try_now(self) -> bool:
        """Admit at once if nobody waits and both caps allow it."""
        if self.waiting or not self._can_enter():
            return False
        if self.bucket is not None and self.bucket.take() > 0:
            return False
        self._enter()
        return True

    def _enter(self) -> None:
        self.stats.active += 1
        self.stats.admitted += 1
        self.stats.peak_active = max(self.stats.peak_active, self.stats.active)

    def release(self) -> None:
        self.stats.active -= 1
        if self._kick is not None:
            self._kick.set()

    async def admit(self) -> str | None:
        """Wait for admission; None when admitted, else why it was refused."""
        if self.try_now():
            return None
        if len(self.waiting) >= self.spec.queue:
            self.stats.refused_queue_full += 1
            return "queue full"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        self.stats.queued += 1
        self.stats.peak_queue = max(self.stats.peak_queue, len(self.waiting))
        self._ensure_pump()
        t0 = self.clock()
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.spec.queue_timeout)
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                return None  # admitted in the same instant: keep it
            fut.cancel()
            with contextlib.suppress(ValueError):
                self.waiting.remove(fut)
            self.stats.refused_timeout += 1
            return "queue timeout"
        self.stats.wait_total += self.clock() - t0
        return None

    def _ensure_pump(self) -> None:
        if self._kick is None:
            self._kick = asyncio.Event()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())

    async def _run_pump(self) -> None:
        """Hand tokens and slots to waiters in order, sleeping until the next one is due."""
        assert self._kick is not None
        while self.waiting:
            while self.waiting and self.waiting[0].done():
                self.waiting.popleft()  # timed out
            if not self.waiting:
                break
            if not self._can_enter():
                self._kick.clear()
                await self._kick.wait()
                continue
            delay = self.bucket.take() if self.bucket is not None else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            fut = self.waiting.popleft()
            if fut.done():
                # Timed out while we took its token: give the token back.
                if self.bucket is not None:
                    self.bucket.tokens += 1.0
                continue
            self._enter()
            fut.set_result(None)

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


class _Side(asyncio.Protocol):
    """One end of a relayed connection: bytes in here go out of `peer`, with back-pressure."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.closed = False
        self.eof = False
        self.early: list[bytes] = []  # bytes that arrived before the peer was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            # Some loops (uvloop) start reading right after connection_made even if
            # it paused reading: keep the bytes and pause until the peer is there.
            self.early.append(data)
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        # Half-close travels through: the peer's write side ends, reading goes on,
        # until both directions have ended: then both sides close.
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None:
            return False
        if peer.eof or not peer.transport.can_write_eof():
            peer.transport.close()
            return False
        peer.transport.write_eof()
        return True

    # The peer's reading follows this side's write buffer.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            if exc is not None:
                self.peer.transport.abort()
            else:
                self.peer.transport.close()


class _Client(_Side):
    """The accepted side: held (not read) until admitted and the upstream is connected."""

    def __init__(self, proxy: ThrottleProxy) -> None:
        super().__init__()
        self.proxy = proxy
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self.proxy.stats.accepted += 1
        task = asyncio.get_running_loop().create_task(self._admit())
        self.proxy._tasks.add(task)
        task.add_done_callback(self.proxy._tasks.discard)

    async def _admit(self) -> None:
        proxy = self.proxy
        assert self.transport is not None
        why = await proxy.limiter.admit()
        if why is not None:
            _refuse(self.transport, proxy.spec.refuse, why)
            return
        self.admitted = True
        if self.closed:
            proxy.limiter.release()
            return
        up = _Side()
        up.peer = self
        self.peer = up
        loop = asyncio.get_running_loop()
        try:
            if proxy.upstream.family == "unix":
                await loop.create_unix_connection(lambda: up, proxy.upstream.path)
            else:
                await loop.create_connection(lambda: up, proxy.upstream.host,
                                             proxy.upstream.port)
        except OSError:
            proxy.stats.upstream_errors += 1
            self.peer = None
            _refuse(self.transport, proxy.spec.refuse, "upstream unreachable")
            return
        if self.closed:
            if up.transport is not None:
                up.transport.close()
            return
        if self.early and up.transport is not None:
            up.transport.write(b"".join(self.early))
            self.early.clear()
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.admitted:
            self.admitted = False
            self.proxy.limiter.release()


def _refuse(transport: asyncio.Transport, mode: str, why: str) -> None:
    if mode == "http503":
        body = f"service throttled by fdguard: {why}\n".encode()
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        transport.close()
        return
    abort_with_rst(transport)


class ThrottleProxy:
    """The proxy: accept on `listen_sock`, admit, forward to `upstream` (host:port or unix:path)."""

    def __init__(self, listen_sock: socket.socket, upstream: ListenSpec, spec: ThrottleSpec,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = listen_sock
        self.upstream = upstream
        self.spec = spec
        self.stats = ThrottleStats()
        self.limiter = Limiter(spec, self.stats, clock)
        self._server: asyncio.Server | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until `stop()`; then close the listener and abort open connections."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Client(self), sock=self.sock,
                                                backlog=1024)
        if ready is not None:
            ready()
        try:
            await self._stop.wait()
        finally:
            self._server.close()
            await self.limiter.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()


def run_proxy(proxy: ThrottleProxy, ready: Callable[[], None] | None = None,
              install_signals: bool = True) -> ThrottleStats:
    """Run `proxy` on a new event loop (uvloop when available) until SIGTERM/SIGINT or stop()."""
    import signal  # noqa: PLC0415 - only the blocking runner needs it

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, proxy.stop)
        await proxy.serve(ready)

    try:
        uvloop: Any = importlib.import_module("uvloop")
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    return proxy.stats
