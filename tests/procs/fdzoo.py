"""A real process holding one fd of every kind fdguard classifies.

It prints one JSON line -- {fd: {"kind", "state", "local", "remote"}} -- the
ground truth, then waits on stdin until the test ends it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import sys
import tempfile

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
truth: dict[int, dict[str, object]] = {}
keep: list[object] = []


def note(fd: int, kind: str, state: str | None = None, local: str | None = None,
         remote: str | None = None) -> None:
    truth[fd] = {"kind": kind, "state": state, "local": local, "remote": remote}


def ep(addr: tuple) -> str:  # type: ignore[type-arg]
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


tmp = tempfile.mkdtemp(prefix="fdzoo-")

# files, deleted file, directory, chardev, fifo, pipe
f = open(os.path.join(tmp, "plain"), "w")  # noqa: SIM115
keep.append(f)
note(f.fileno(), "file")
d = open(os.path.join(tmp, "deleted"), "w")  # noqa: SIM115
os.unlink(d.name)
keep.append(d)
note(d.fileno(), "file")
dfd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
note(dfd, "dir")
null = os.open("/dev/null", os.O_RDONLY)
note(null, "chardev")
fifo_path = os.path.join(tmp, "fifo")
os.mkfifo(fifo_path)
fifo = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK)
note(fifo, "fifo")
r, w = os.pipe()
note(r, "pipe")
note(w, "pipe")

# TCP: listener, established pair, CLOSE-WAIT, never connected, failed connect, tcp6
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(16)
keep.append(lst)
note(lst.fileno(), "tcp", "LISTEN", ep(lst.getsockname()), None)
cli = socket.create_connection(lst.getsockname())
srv, _ = lst.accept()
keep += [cli, srv]
note(cli.fileno(), "tcp", "ESTAB", ep(cli.getsockname()), ep(cli.getpeername()))
note(srv.fileno(), "tcp", "ESTAB", ep(srv.getsockname()), ep(srv.getpeername()))
cw = socket.create_connection(lst.getsockname())
peer, _ = lst.accept()
peer.close()  # the peer hangs up: cw sits in CLOSE-WAIT until closed
keep.append(cw)
note(cw.fileno(), "tcp", "CLOSE-WAIT", ep(cw.getsockname()), None)
never = socket.socket()
keep.append(never)
note(never.fileno(), "tcp", "CLOSE")
dead_port_sock = socket.socket()
dead_port_sock.bind(("127.0.0.1", 0))
dead_port = dead_port_sock.getsockname()[1]
dead_port_sock.close()
failed = socket.socket()
with contextlib.suppress(ConnectionRefusedError):
    failed.connect(("127.0.0.1", dead_port))
keep.append(failed)
note(failed.fileno(), "tcp", "CLOSE")
l6 = socket.socket(socket.AF_INET6)
l6.bind(("::1", 0))
l6.listen(4)
keep.append(l6)
note(l6.fileno(), "tcp6", "LISTEN", ep(l6.getsockname()), None)

# UDP v4/v6, unix (listening with a path, a connected pair), netlink
u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u4.bind(("127.0.0.1", 0))
keep.append(u4)
note(u4.fileno(), "udp", "UNCONN", ep(u4.getsockname()), None)
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u6.bind(("::1", 0))
keep.append(u6)
note(u6.fileno(), "udp6", "UNCONN", ep(u6.getsockname()), None)
upath = os.path.join(tmp, "sock")
ul = socket.socket(socket.AF_UNIX)
ul.bind(upath)
ul.listen(4)
keep.append(ul)
note(ul.fileno(), "unix", "LISTEN", upath, None)
a, b = socket.socketpair()
keep += [a, b]
note(a.fileno(), "unix", "ESTAB")
note(b.fileno(), "unix", "ESTAB")
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
nl.bind((0, 0))
keep.append(nl)
note(nl.fileno(), "netlink")
# raw and packet sockets need CAP_NET_RAW (tests run as root)
if os.geteuid() == 0:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    keep.append(raw)
    note(raw.fileno(), "raw")
    pkt = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    keep.append(pkt)
    note(pkt.fileno(), "packet")

# anonymous inodes: epoll (with an interest list), eventfd, inotify, signalfd,
# timerfd, pidfd, memfd, io_uring
epl = select.epoll()
epl.register(r, select.EPOLLIN)
epl.register(lst.fileno(), select.EPOLLIN)
keep.append(epl)
note(epl.fileno(), "epoll")
efd = os.eventfd(0)
note(efd, "eventfd")
ino = libc.inotify_init1(0)
libc.inotify_add_watch(ino, tmp.encode(), 0x100)
libc.inotify_add_watch(ino, b"/tmp", 0x100)
note(ino, "inotify")
mask = (ctypes.c_ulong * 16)(1 << (signal.SIGUSR2 - 1))
sfd = libc.signalfd(-1, mask, 0)
assert sfd >= 0, ctypes.get_errno()
note(sfd, "signalfd")
tfd = libc.timerfd_create(1, 0)
note(tfd, "timerfd")
pfd = os.pidfd_open(os.getpid())
note(pfd, "pidfd")
mfd = os.memfd_create("zoo")
note(mfd, "memfd")


class IoUringParams(ctypes.Structure):
    _fields_ = [("pad", ctypes.c_byte * 120)]


params = IoUringParams()
uring = libc.syscall(425, 4, ctypes.byref(params))
extras = {"tmp": tmp, "io_uring": uring >= 0, "epoll_targets": sorted([r, lst.fileno()]),
          "epoll_fd": epl.fileno(), "inotify_fd": ino}
if uring >= 0:
    note(uring, "io_uring")

print(json.dumps({"truth": {str(k): v for k, v in truth.items()}, "extras": extras}),
      flush=True)
sys.stdin.read()
