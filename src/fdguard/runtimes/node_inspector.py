"""Get a Node.js handle view from any running node through its inspector, then close it again.

This changes the target for a moment, so it only runs behind an explicit flag
(`fdguard explain --view inspector --open-inspector`). What it does:

 1. SIGUSR1 makes node open its inspector on 127.0.0.1 (port 9229 unless
    --inspect-port says otherwise); fdguard waits for the new listening socket
    to appear among the process's own fds, so it talks to that process only.
 2. GET /json/list on that port gives the WebSocket URL; one Runtime.evaluate of
    `JSON.stringify(process.report.getReport())` returns the diagnostic report
    (network interfaces excluded: no DNS lookups).
 3. If fdguard opened the inspector, it evaluates `require('inspector').close()`
    and waits until the listening socket is gone again. An inspector that was
    already open is left open.

While the inspector is open anyone on the machine who can reach 127.0.0.1 can
attach to the process: the window lasts as long as one report takes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import struct
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from fdguard.inspect import snapshot
from fdguard.model import FdKind, TcpState
from fdguard.procfs.process import DEFAULT_ROOT
from fdguard.runtimes.handles import HandleView
from fdguard.runtimes.node_report import parse_report

_CLOSE = ("((req) => setImmediate(() => { try { req('inspector').close(); } "
          "catch (e) { /* already closed */ } }))(require)")


class InspectorError(Exception):
    """The inspector could not be opened, reached or closed (internal to runtimes/)."""


def _loopback_listeners(pid: int, root: str) -> set[int]:
    out = set()
    for f in snapshot(pid, root=root, probe_sockets=False).fds:
        if f.kind in (FdKind.TCP, FdKind.TCP6) and f.state is TcpState.LISTEN and f.local:
            host, _, port = f.local.rpartition(":")
            if host in ("127.0.0.1", "[::1]"):
                out.add(int(port))
    return out


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise InspectorError(f"timed out waiting for {what}")
        # Node opens (and closes) the inspector on its own threads: poll its fds.
        time.sleep(0.05)


class _WebSocket:
    """The smallest RFC 6455 client the inspector needs: masked text frames out,
    unfragmented or fragmented frames in, on a loopback TCP connection."""

    def __init__(self, url: str, timeout: float) -> None:
        u = urlparse(url)
        if u.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise InspectorError(f"refusing a non-loopback inspector URL {url}")
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise InspectorError("the inspector closed the WebSocket handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise InspectorError(f"WebSocket upgrade refused: {head[:80]!r}")
        self.buf = head.split(b"\r\n\r\n", 1)[1]

    def close(self) -> None:
        self.sock.close()

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> str:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if b1 & 0x80 else b""
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise EOFError
            if opcode in (0x9, 0xA):  # ping/pong: the inspector does not ping; ignore
                continue
            parts.append(data)
            if b0 & 0x80:
                return b"".join(parts).decode()


def _call(ws: _WebSocket, msg_id: int, expression: str) -> Any:
    ws.send(json.dumps({"id": msg_id, "method": "Runtime.evaluate", "params": {
        "expression": expression, "returnByValue": True, "includeCommandLineAPI": True}}))
    while True:
        reply = json.loads(ws.recv())
        if reply.get("id") == msg_id:
            if "error" in reply:
                raise InspectorError(f"Runtime.evaluate failed: {reply['error']}")
            result = reply.get("result", {})
            if "exceptionDetails" in result:
                raise InspectorError(f"evaluation threw: {result['exceptionDetails']}")
            return result.get("result", {}).get("value")


def inspector_report(pid: int, *, root: str = DEFAULT_ROOT, timeout: float = 10.0) -> HandleView:
    """Open the inspector of `pid` (SIGUSR1), take a diagnostic report, close it again.

    Raises:
        InspectorError: it did not open, answer, or close in time.
        NoSuchProcess, AccessDenied: reading the process.
    """
    before = _loopback_listeners(pid, root)
    os.kill(pid, signal.SIGUSR1)
    new: set[int] = _wait(lambda: _loopback_listeners(pid, root) - before, timeout,
                          "node to open its inspector")
    ports = sorted(new) or sorted(before)
    opened = bool(new)
    view: HandleView | None = None
    try:
        for port in ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                            timeout=timeout) as resp:
                    targets = json.loads(resp.read())
            except (OSError, ValueError):
                continue
            if not targets:
                continue
            ws = _WebSocket(targets[0]["webSocketDebuggerUrl"], timeout)
            try:
                text = _call(ws, 1, "process.report.excludeNetwork = true, "
                                    "JSON.stringify(process.report.getReport())")
                doc = json.loads(text)
                if doc.get("header", {}).get("processId") != pid:
                    raise InspectorError(f"the inspector on port {port} is another process's")
                view = parse_report(doc, "node-inspector")
                if opened:
                    # Closing from inside drops our own connection: no reply comes, so
                    # it runs on the next tick. The command-line API's `require` exists
                    # only at the top level of the evaluation: capture it. Anything
                    # thrown later would crash the target, hence the try.
                    ws.send(json.dumps({"id": 2, "method": "Runtime.evaluate", "params": {
                        "expression": _CLOSE, "includeCommandLineAPI": True}}))
                    _drain(ws)
            finally:
                ws.close()
            break
    finally:
        if opened:
            _wait(lambda: not (_loopback_listeners(pid, root) & new), timeout,
                  "node to close its inspector again")
    if view is None:
        raise InspectorError(f"no inspector of pid {pid} answered on {ports}")
    return view


def _drain(ws: _WebSocket) -> None:
    try:
        while True:
            ws.recv()
    except (EOFError, OSError):
        return
