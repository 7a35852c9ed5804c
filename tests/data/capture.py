"""Capture the committed /proc and sock_diag samples under tests/data/proc/ from this machine.

Run as root: `python3 tests/data/capture.py`. The script re-runs itself inside a
fresh network namespace (`unshare --net`), so the socket tables it records hold
only the sockets it opened itself and nothing of the host. It then opens one fd
of every kind, copies what the kernel prints about them (fdinfo, stat, limits,
/proc/self/net/*, sock_diag dumps) byte for byte, and writes `manifest.json`:
the ground truth (fd numbers, link targets, inodes, ports, paths) the unit tests
compare the parsers' output with.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "proc"
sys.path.insert(0, str(HERE.parent.parent / "src"))

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

SYS_IO_URING_SETUP = 425
CLOCK_MONOTONIC = 1
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_MODIFY = 0x2
FAN_CLASS_NOTIF = 0
FAN_CLOEXEC = 1

keep: list[object] = []
manifest: dict[str, Any] = {"fds": {}}


def check(res: int, what: str) -> int:
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return res


def record(name: str, fd: int, **extra: Any) -> None:
    manifest["fds"][name] = {"fd": fd, "link": os.readlink(f"/proc/self/fd/{fd}"), **extra}


def ep(addr: tuple[Any, ...]) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def open_everything(tmp: str) -> None:
    # -- files and friends
    path = os.path.join(tmp, "plain.txt")
    Path(path).write_bytes(b"0123456789" * 10)
    f = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    os.lseek(f, 42, os.SEEK_SET)
    fcntl.flock(f, fcntl.LOCK_EX)
    record("file", f, pos=42, path=path)
    gone = os.open(os.path.join(tmp, "gone.txt"), os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC)
    os.unlink(os.path.join(tmp, "gone.txt"))
    record("deleted_file", gone)
    d = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    record("dir", d)
    null = os.open("/dev/null", os.O_RDONLY)
    record("chardev", null)
    fifo_path = os.path.join(tmp, "fifo")
    os.mkfifo(fifo_path)
    fifo = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    record("fifo", fifo, path=fifo_path)
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    record("pipe_r", r)
    record("pipe_w", w)
    mfd = os.memfd_create("fdguard-sample")
    record("memfd", mfd)

    # -- anonymous inodes
    evfd = os.eventfd(5, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    record("eventfd", evfd, count=5)
    ep_ = select.epoll()
    keep.append(ep_)
    ep_.register(evfd, select.EPOLLIN)
    ep_.register(r, select.EPOLLIN | select.EPOLLET)
    record("epoll", ep_.fileno(), targets=[evfd, r])
    empty_ep = select.epoll()
    keep.append(empty_ep)
    record("epoll_empty", empty_ep.fileno(), targets=[])
    ino = check(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC), "inotify_init1")
    check(libc.inotify_add_watch(ino, tmp.encode(), IN_CREATE | IN_DELETE), "inotify_add_watch")
    check(libc.inotify_add_watch(ino, path.encode(), IN_MODIFY), "inotify_add_watch")
    record("inotify", ino, watches=2)
    pidfd = os.pidfd_open(os.getpid())
    record("pidfd", pidfd, pid=os.getpid())
    tfd = check(libc.timerfd_create(CLOCK_MONOTONIC, os.O_CLOEXEC), "timerfd_create")
    record("timerfd", tfd, clockid=CLOCK_MONOTONIC)
    sigmask = 1 << (signal.SIGUSR1 - 1)
    sigset = ctypes.create_string_buffer(sigmask.to_bytes(8, "little"), 128)  # glibc sigset_t
    sfd = check(libc.signalfd(-1, sigset, os.O_CLOEXEC), "signalfd")
    record("signalfd", sfd, sigmask=sigmask)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    try:
        ring = check(libc.syscall(SYS_IO_URING_SETUP, ctypes.c_uint(4), params), "io_uring")
        record("io_uring", ring)
    except OSError as err:
        manifest["io_uring_unavailable"] = str(err)
    try:
        fan = check(libc.fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC, os.O_RDONLY),
                    "fanotify_init")
        record("fanotify", fan)
    except OSError as err:
        manifest["fanotify_unavailable"] = str(err)

    # -- TCP over IPv4: listener, an established pair, a CLOSE-WAIT, a never-connected one
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    keep.append(lst)
    record("tcp_listen", lst.fileno(), local=ep(lst.getsockname()))
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    keep.extend([cli, srv])
    record("tcp_client", cli.fileno(), local=ep(cli.getsockname()), remote=ep(cli.getpeername()))
    record("tcp_server", srv.fileno(), local=ep(srv.getsockname()), remote=ep(srv.getpeername()))
    cw = socket.create_connection(lst.getsockname())
    hang, _ = lst.accept()
    hang.close()
    keep.append(cw)
    for _ in range(10_000):  # bounded: the FIN arrives over loopback at once
        if tcp_state(cw) == 8:  # TCP_CLOSE_WAIT
            break
        select.select([cw], [], [], 0.01)
    record("tcp_close_wait", cw.fileno(), local=ep(cw.getsockname()),
           remote=ep(cw.getpeername()), state=tcp_state(cw))
    never = socket.socket()
    keep.append(never)
    record("tcp_never", never.fileno())

    # -- TCP over IPv6
    lst6 = socket.socket(socket.AF_INET6)
    lst6.bind(("::1", 0))
    lst6.listen(8)
    cli6 = socket.create_connection(lst6.getsockname()[:2])
    srv6, _ = lst6.accept()
    keep.extend([lst6, cli6, srv6])
    record("tcp6_listen", lst6.fileno(), local=ep(lst6.getsockname()))
    record("tcp6_client", cli6.fileno(), local=ep(cli6.getsockname()),
           remote=ep(cli6.getpeername()))

    # -- UDP: bound, connected, IPv6
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    uc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    uc.connect(u.getsockname())
    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u6.bind(("::1", 0))
    keep.extend([u, uc, u6])
    record("udp_bound", u.fileno(), local=ep(u.getsockname()))
    record("udp_connected", uc.fileno(), local=ep(uc.getsockname()),
           remote=ep(uc.getpeername()))
    record("udp6_bound", u6.fileno(), local=ep(u6.getsockname()))

    # -- unix: listener on a path, an abstract name, a connected pair
    upath = os.path.join(tmp, "listen.sock")
    ul = socket.socket(socket.AF_UNIX)
    ul.bind(upath)
    ul.listen(4)
    ua = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ua.bind("\0fdguard-sample")
    a, b = socket.socketpair()
    keep.extend([ul, ua, a, b])
    record("unix_listen", ul.fileno(), path=upath)
    record("unix_abstract", ua.fileno(), path="@fdguard-sample")
    record("unix_pair_a", a.fileno())
    record("unix_pair_b", b.fileno())

    # -- netlink, packet, raw
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    nl.bind((0, 0))
    pk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    keep.extend([nl, pk, raw])
    record("netlink", nl.fileno())
    record("packet", pk.fileno())
    record("raw", raw.fileno())


def copy(src: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(Path(src).read_bytes())


def inner() -> None:
    from fdguard.procfs import sockdiag

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    tmp = tempfile.mkdtemp(prefix="fdguard-capture-")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
    try:
        copy("/proc/self/stat", OUT / "stat_plain")
        # A command name with spaces and parentheses: the reason stat is parsed
        # from the last ')'.
        Path("/proc/self/comm").write_text("x) (y z")
        copy("/proc/self/stat", OUT / "stat")
        copy("/proc/self/limits", OUT / "limits")
        manifest["pid"] = os.getpid()
        manifest["comm"] = Path("/proc/self/comm").read_text().rstrip("\n")
        manifest["ppid"] = os.getppid()
        manifest["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
        open_everything(tmp)
        for name, entry in manifest["fds"].items():
            fd = entry["fd"]
            copy(f"/proc/self/fdinfo/{fd}", OUT / "fdinfo" / name)
            st = os.fstat(fd)
            entry["inode"] = st.st_ino
            entry["mode"] = st.st_mode
        for table in ("tcp", "tcp6", "udp", "udp6", "unix", "netlink", "packet", "raw"):
            copy(f"/proc/self/net/{table}", OUT / "net" / table)
        dumps = {
            "inet_tcp": sockdiag.inet_request(socket.AF_INET, socket.IPPROTO_TCP),
            "inet_tcp6": sockdiag.inet_request(socket.AF_INET6, socket.IPPROTO_TCP),
            "inet_udp": sockdiag.inet_request(socket.AF_INET, socket.IPPROTO_UDP),
            "unix": sockdiag.unix_request(),
        }
        (OUT / "sockdiag").mkdir()
        for name, request in dumps.items():
            (OUT / "sockdiag" / f"{name}.bin").write_bytes(sockdiag.dump(request))
        manifest["tmp"] = tmp
        manifest["kernel"] = os.uname().release
        (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    if sys.argv[1:] == ["--inner"]:
        inner()
        return
    if os.geteuid() != 0:
        sys.exit("capture.py needs root (a new network namespace, packet and raw sockets)")
    subprocess.run(["unshare", "--net", "--", sys.executable, __file__, "--inner"], check=True)
    print(f"samples written to {OUT}")


if __name__ == "__main__":
    main()
