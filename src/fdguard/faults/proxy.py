"""A loopback TCP fault proxy: forwards connections and injects network faults into them.

Sits between a client and a service (both on loopback) and, per connection,
adds what real networks and peers do to a service:

- `latency_ms` / `jitter_ms`: each chunk waits latency +- jitter, both ways;
- `bandwidth_bps`: each direction is throttled to this many bytes per second;
- `reset_after`: after that many bytes went upstream, both sides get an RST
  (SO_LINGER 0) instead of a FIN -- the service reads ECONNRESET;
- `blackhole`: connect upstream but forward nothing either way;
- `half_open`: when the client goes away, never tell the service -- its socket
  stays ESTABLISHED to a dead peer (what a vanished laptop or a dropped NAT
  mapping looks like), until the proxy stops or `hold_s` passes;
- `slow_close_ms`: a FIN reaches the other side only this much later;
- `timeout_ms`: stop forwarding and close both sides after this long;
- `partial_bytes`: forward only the first N bytes upstream, then close both
  sides with a FIN -- the service sees a truncated request and EOF.

Design: one asyncio loop in a daemon thread owns every socket; the public
methods are thread-safe (they only swap an immutable `ProxyFaults` or hop onto
the loop). New connections take the faults current when they are accepted, so
a stress run switches faults between rounds without restarting anything.
`stop()` closes every socket it opened: the proxy never leaks an fd. It runs
on asyncio's own loop, not uvloop: uvloop would cut the added latency, but the
first uvloop loop in a process opens a pipe pair that is never closed, and a
leak checker must not leave fds behind in the process that imports it.
Only loopback addresses are accepted, on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import struct
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from fdguard.errors import UsageError

_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class ProxyFaults:
    """The faults applied to each new connection; the default forwards faithfully."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_bps: int | None = None
    reset_after: int | None = None
    blackhole: bool = False
    half_open: bool = False
    hold_s: float = 30.0
    slow_close_ms: float = 0.0
    timeout_ms: float | None = None
    partial_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms", "slow_close_ms", "hold_s"):
            if getattr(self, name) < 0:
                raise UsageError(f"proxy fault {name} must be >= 0")
        for name in ("bandwidth_bps", "reset_after", "partial_bytes", "timeout_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageError(f"proxy fault {name} must be >= 0")
        if self.bandwidth_bps == 0:
            raise UsageError("proxy fault bandwidth_bps must be > 0 (use blackhole to stop data)")

    @property
    def is_clean(self) -> bool:
        return self == ProxyFaults(hold_s=self.hold_s)

    @property
    def label(self) -> str:
        if self.is_clean:
            return "proxy:none"
        parts = []
        defaults = ProxyFaults()
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name != "hold_s" and value != getattr(defaults, name):
                parts.append(name if value is True else f"{name}={value:g}"
                             if isinstance(value, float) else f"{name}={value}")
        return "proxy:" + ",".join(parts)


def _check_loopback(host: str) -> None:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError as err:
        if host != "localhost":
            raise UsageError(f"fault proxy: {host!r} is not a loopback address") from err
        return
    if not addr.is_loopback:
        raise UsageError(f"fault proxy: {host} is not loopback; the proxy stays on loopback")


@dataclass
class ProxyStats:
    """Counters kept by the proxy (read them with `FaultProxy.stats()`)."""

    accepted: int = 0
    active: int = 0
    upstream_failed: int = 0
    resets: int = 0
    held_half_open: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    faults_seen: dict[str, int] = field(default_factory=dict)


def abort_with_rst(transport: asyncio.WriteTransport) -> None:
    """Close `transport` with an RST: SO_LINGER on, timeout 0, then abort."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FaultProxy:
    """A thread-backed loopback TCP proxy with switchable faults (see module doc).

    Example:
        with FaultProxy(("127.0.0.1", 8080), ProxyFaults(reset_after=4)) as proxy:
            connect_to(proxy.address)
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        faults: ProxyFaults | None = None,
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        seed: int | None = None,
    ) -> None:
        _check_loopback(upstream[0])
        _check_loopback(listen[0])
        self._upstream = upstream
        self._faults = faults or ProxyFaults()
        self._listen = listen
        self._rng = random.Random(seed)
        self._stats = ProxyStats()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.address: tuple[str, int] = listen

    # -- control (any thread) ---------------------------------------------

    @property
    def faults(self) -> ProxyFaults:
        return self._faults

    def set_faults(self, faults: ProxyFaults) -> None:
        """Apply `faults` to connections accepted from now on."""
        self._faults = faults

    def set_upstream(self, upstream: tuple[str, int]) -> None:
        """Forward connections accepted from now on to `upstream`."""
        _check_loopback(upstream[0])
        self._upstream = upstream

    def stats(self) -> ProxyStats:
        with self._lock:
            s = self._stats
            return ProxyStats(s.accepted, s.active, s.upstream_failed, s.resets,
                              s.held_half_open, s.bytes_up, s.bytes_down, dict(s.faults_seen))

    def start(self, timeout: float = 10.0) -> FaultProxy:
        """Start listening; returns once `address` holds the bound port."""
        if self._thread is not None:
            raise UsageError("fault proxy already started")
        self._thread = threading.Thread(target=self._run, name="fdguard-fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("fault proxy did not start")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every connection (held half-open ones too)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._shutdown_event.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the loop thread --------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as err:  # surfaced to start() or lost at stop
            self._error = err
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._shutdown_event = asyncio.Event()
        server = await asyncio.start_server(
            self._handle, self._listen[0], self._listen[1], backlog=512, reuse_address=True
        )
        self._server = server
        sock = server.sockets[0]
        host, port = sock.getsockname()[:2]
        self.address = (host, port)
        self._ready.set()
        try:
            await self._shutdown_event.wait()
        finally:
            server.close()
            for w in list(self._writers):
                w.transport.abort()
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, d in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + d)

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(c_writer)
        faults = self._faults
        self._count(accepted=1, active=1)
        with self._lock:
            self._stats.faults_seen[faults.label] = self._stats.faults_seen.get(faults.label, 0) + 1
        u_writer: asyncio.StreamWriter | None = None
        try:
            try:
                u_reader, u_writer = await asyncio.open_connection(*self._upstream)
            except OSError:
                self._count(upstream_failed=1)
                abort_with_rst(c_writer.transport)
                return
            self._writers.add(u_writer)
            await self._serve(faults, c_reader, c_writer, u_reader, u_writer)
        except asyncio.CancelledError:
            pass
        finally:
            for w in (c_writer, u_writer):
                if w is not None:
                    w.transport.abort()
                    self._writers.discard(w)
            self._count(active=-1)
            self._tasks.discard(task)

    async def _serve(
        self,
        faults: ProxyFaults,
        c_reader: asyncio.StreamReader,
        c_writer: asyncio.StreamWriter,
        u_reader: asyncio.StreamReader,
        u_writer: asyncio.StreamWriter,
    ) -> None:
        """Forward both ways until both sides closed, or a fault or an error ends it.

        A FIN is passed on per direction (half-close is kept), so a client that
        shuts down its write side still gets the reply.
        """
        stop = asyncio.Event()
        state = {"up": 0}
        why: list[str] = []

        def end(reason: str) -> None:
            why.append(reason)
            stop.set()

        def reset() -> None:
            # Count first: once the RSTs are out, a caller may already read the stats.
            self._count(resets=1)
            abort_with_rst(u_writer.transport)
            abort_with_rst(c_writer.transport)
            end("reset")

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while True:
                    data = await src.read(_CHUNK)
                    if not data:
                        break
                    if faults.blackhole:
                        continue
                    cut = None
                    if up and faults.partial_bytes is not None:
                        room = faults.partial_bytes - state["up"]
                        if room <= len(data):
                            data, cut = data[: max(room, 0)], "partial"
                    if up and faults.reset_after is not None:
                        room = faults.reset_after - state["up"]
                        if room <= len(data):
                            data, cut = data[: max(room, 0)], "reset"
                    await self._delay(faults, len(data))
                    if data:
                        dst.write(data)
                    if cut == "reset":
                        # Reset now, before this loop runs anything else: a reply
                        # the service sends back must not slip through first.
                        reset()
                        return
                    if data:
                        await dst.drain()
                        state["up" if up else "down"] = state.get("up" if up else "down", 0) + len(
                            data
                        )
                        self._count(**{"bytes_up" if up else "bytes_down": len(data)})
                    if cut is not None:
                        end(cut)
                        return
                # EOF from src.
                if up and faults.half_open:
                    end("half_open")
                    return
                if faults.slow_close_ms:
                    await asyncio.sleep(faults.slow_close_ms / 1000)
                if dst.can_write_eof():
                    dst.write_eof()
            except (ConnectionError, OSError):
                end("error")

        if faults.reset_after == 0:
            reset()
        else:
            pumps = [
                asyncio.ensure_future(pump(c_reader, u_writer, True)),
                asyncio.ensure_future(pump(u_reader, c_writer, False)),
            ]
            both = asyncio.gather(*pumps)
            stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
            waiting: set[asyncio.Future[Any]] = {both, stopped}
            timeout = faults.timeout_ms / 1000 if faults.timeout_ms is not None else None
            try:
                await asyncio.wait(waiting, timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                for p in pumps:
                    p.cancel()
                await asyncio.gather(both, stopped, return_exceptions=True)
            if not why and not both.done():
                why.append("timeout")
        reason = why[0] if why else "closed"
        # A "reset" was counted and sent by reset(), where it happened.
        if reason == "half_open":
            # The client left; the service is never told. Hold its side open.
            self._count(held_half_open=1)
            c_writer.transport.abort()
            await asyncio.sleep(faults.hold_s)
        elif reason == "partial":
            # The service gets the truncated request, then EOF; the client is closed.
            with contextlib.suppress(OSError, RuntimeError):
                u_writer.write_eof()
            c_writer.close()
            await self._wait_eof(u_reader)
        elif reason == "timeout":
            u_writer.close()
            c_writer.close()

    async def _wait_eof(self, reader: asyncio.StreamReader) -> None:
        """Read and drop until the peer closes, for at most 5 s."""

        async def eof() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while await reader.read(_CHUNK):
                    pass

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(eof(), 5.0)

    async def _delay(self, faults: ProxyFaults, nbytes: int) -> None:
        wait = 0.0
        if faults.latency_ms or faults.jitter_ms:
            jitter = self._rng.uniform(-faults.jitter_ms, faults.jitter_ms)
            wait += max(0.0, faults.latency_ms + jitter) / 1000
        if faults.bandwidth_bps:
            wait += nbytes / faults.bandwidth_bps
        if wait > 0:
            await asyncio.sleep(wait)

