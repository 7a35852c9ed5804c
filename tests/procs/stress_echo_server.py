"""A real loopback server that reports what each connection looked like from its side.

It echoes every line back, and when a connection ends prints one JSON line on
stdout: {"conn": N, "data": <bytes received, latin-1>, "end": "eof"|"reset"|"error",
"seconds": <connection lifetime>}. The first line it prints is its port.
Fault-proxy tests read these reports to see what the service saw.
Runs until killed (or stdin closes).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

lsock = socket.socket()
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(("127.0.0.1", 0))
lsock.listen(128)
print(lsock.getsockname()[1], flush=True)
lock = threading.Lock()
counter = 0


def serve(conn: socket.socket, n: int) -> None:
    t0 = time.monotonic()
    got = b""
    end = "eof"
    with conn:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                got += data
                conn.sendall(data)
        except ConnectionResetError:
            end = "reset"
        except OSError:
            end = "error"
    report = {"conn": n, "data": got.decode("latin-1"), "end": end,
              "seconds": round(time.monotonic() - t0, 4)}
    with lock:
        print(json.dumps(report), flush=True)


def watch_stdin() -> None:
    sys.stdin.read()
    import os

    os._exit(0)


threading.Thread(target=watch_stdin, daemon=True).start()
while True:
    c, _ = lsock.accept()
    counter += 1
    threading.Thread(target=serve, args=(c, counter), daemon=True).start()
