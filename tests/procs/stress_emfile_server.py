"""A plain-Python (no libuv) server that handles EMFILE on accept badly, on purpose.

--on-emfile spin: retry accept() at once, forever -- a busy loop while the
listening socket stays readable (100% CPU) until fds free up.
--on-emfile wedge: stop accepting for good -- it never serves again.

The counter-examples for the limit squeeze: libuv servers (Node, uvloop)
recover, these do not. Prints its port once ready; runs until killed.
"""

from __future__ import annotations

import errno
import select
import socket
import sys

mode = sys.argv[sys.argv.index("--on-emfile") + 1] if "--on-emfile" in sys.argv else "spin"
lsock = socket.socket()
lsock.bind(("127.0.0.1", 0))
lsock.listen(128)
lsock.setblocking(False)
print(lsock.getsockname()[1], flush=True)

clients: dict[int, socket.socket] = {}
accepting = True
while True:
    watch = [lsock, *clients.values()] if accepting else list(clients.values())
    readable, _, _ = select.select(watch, [], [], 1.0)
    for s in readable:
        if s is lsock:
            try:
                conn, _ = lsock.accept()
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    if mode == "wedge":
                        accepting = False
                    continue  # spin: select says readable again at once
                raise
            conn.setblocking(False)
            clients[conn.fileno()] = conn
            continue
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if data and b"\n" in data:
            s.sendall(b"200 OK\n")
        if not data:
            clients.pop(s.fileno()).close()
