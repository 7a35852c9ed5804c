"""The fd lifecycle: reuse, dup, close_range, exec, threads vs forks, SCM_RIGHTS."""
# ruff: noqa: E501  -- strace lines are kept whole, as strace prints them

from __future__ import annotations

from pathlib import Path

from fdguard.model import FdKind
from fdguard.trace.lifecycle import sockaddr, track
from fdguard.trace.parse import parse_lines

DATA = Path(__file__).parent.parent / "data" / "strace"


def _track(text: str, root: int = 100):  # type: ignore[no-untyped-def]
    return track(parse_lines(text.strip().splitlines()), root)


def test_reuse_of_an_fd_number_keeps_only_the_latest_birth() -> None:
    life = _track(
        """
100 1.0 openat(AT_FDCWD</>, "/a", O_RDONLY) = 5</a>
100 2.0 close(5</a>) = 0
100 3.0 socket(AF_INET6, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 5<socket:[77]>
100 4.0 close(9</old>) = 0
"""
    )
    assert [(b.fd, b.syscall, b.kind, b.inode) for b in life.open] == [
        (5, "socket", FdKind.TCP6, 77)
    ]
    assert [(b.fd, b.closed_by) for b in life.closed] == [(5, "close")]
    assert life.closes_of_older_fds == 1


def test_dup_dup2_fcntl_and_close_range() -> None:
    life = _track(
        """
100 1.0 pipe2([3<pipe:[9]>, 4<pipe:[9]>], O_CLOEXEC) = 0
100 1.1 dup(3<pipe:[9]>) = 5<pipe:[9]>
100 1.2 openat(AT_FDCWD</>, "/x", O_RDONLY) = 6</x>
100 1.3 dup2(4<pipe:[9]>, 6</x>) = 6<pipe:[9]>
100 1.4 fcntl(4<pipe:[9]>, F_DUPFD_CLOEXEC, 10) = 10<pipe:[9]>
100 1.5 fcntl(4<pipe:[9]>, F_SETFD, FD_CLOEXEC) = 0
100 1.6 close_range(5, 6, 0) = 0
100 1.7 close(99) = -1 EBADF (Bad file descriptor)
"""
    )
    open_ = {b.fd: b for b in life.open}
    assert sorted(open_) == [3, 4, 10]
    assert open_[10].dup_of is not None
    assert open_[10].dup_of.startswith("fd 4 (pipe2")
    assert open_[10].cloexec
    closed = {(b.fd, b.syscall): b.closed_by for b in life.closed}
    assert closed[(6, "openat")] == "dup2 (replaced)"
    assert closed[(5, "dup")] == "close_range"
    assert closed[(6, "dup2")] == "close_range"
    assert life.closes_of_older_fds == 0


def test_threads_share_the_table_forks_do_not() -> None:
    life = _track(
        """
100 1.0 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD} => {parent_tid=[101]}, 88) = 101
101 1.1 openat(AT_FDCWD</>, "/t", O_RDONLY) = 7</t>
200 1.15 close(7</t>) = 0
100 1.2 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD) = 200
200 1.3 openat(AT_FDCWD</>, "/child", O_RDONLY) = 8</child>
101 1.4 socket(AF_UNIX, SOCK_STREAM, 0) = 9<socket:[5]>
100 1.5 close(9<socket:[5]>) = 0
"""
    )
    # The forked child's close of 7 (printed before its parent's clone returned)
    # and its own open of 8 do not touch the parent's table.
    assert [(b.fd, b.tid) for b in life.open] == [(7, 101)]
    assert [(b.fd, b.kind) for b in life.closed] == [(9, FdKind.UNIX)]
    assert life.other_tables == 1


def test_exec_closes_cloexec_fds_and_exit_is_recorded() -> None:
    life = _track(
        """
100 1.0 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3<socket:[1]>
100 1.1 eventfd2(0, 0) = 4<anon_inode:[eventfd]>
100 1.2 execve("/bin/true", ["true"], 0x7ff /* 3 vars */) = 0
100 1.3 +++ exited with 0 +++
"""
    )
    assert [b.fd for b in life.open] == [4]
    assert life.closed[0].closed_by == "execve (close-on-exec)"
    assert life.root_exited_at == 1.3


def test_errors_after_birth_epoll_and_exhaustion() -> None:
    life = _track(
        """
100 1.0 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK, IPPROTO_IP) = 3<socket:[1]>
100 1.1 connect(3<socket:[1]>, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)
100 1.2 epoll_ctl(9<anon_inode:[eventpoll]>, EPOLL_CTL_ADD, 3<socket:[1]>, {events=EPOLLOUT, data={u32=3, u64=3}}) = 0
100 1.3 getsockopt(3<socket:[1]>, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0
100 1.4 socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 4<socket:[2]>
100 1.5 bind(4<socket:[2]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EADDRINUSE (Address already in use)
100 1.6 accept4(5<socket:[3]>, NULL, NULL, SOCK_CLOEXEC) = -1 EMFILE (Too many open files)
"""
    )
    by_fd = {b.fd: b for b in life.open}
    assert by_fd[3].epoll_added
    assert [(a.syscall, a.error) for a in by_fd[3].after] == [("connect", "ECONNREFUSED")]
    assert [(a.syscall, a.error, a.detail) for a in by_fd[4].after] == [
        ("bind", "EADDRINUSE", "127.0.0.1:80")
    ]
    assert [(e.syscall, e.errno) for e in life.exhaustion] == [("accept4", "EMFILE")]


def test_scm_rights_and_accept_kind_from_listener() -> None:
    life = _track(
        """
100 1.0 socket(AF_INET6, SOCK_STREAM, IPPROTO_IP) = 3<socket:[1]>
100 1.1 accept4(3<socket:[1]>, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = 4<socket:[2]>
100 1.2 recvmsg(6<socket:[7]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="x", iov_len=1}], msg_iovlen=1, msg_control=[{cmsg_len=24, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[7<pipe:[8]>, 8</etc/passwd>]}], msg_controllen=24, msg_flags=MSG_CMSG_CLOEXEC}, MSG_CMSG_CLOEXEC) = 1
"""
    )
    by_fd = {b.fd: b for b in life.open}
    assert by_fd[4].kind is FdKind.TCP6
    assert (by_fd[7].syscall, by_fd[7].kind) == ("recvmsg", FdKind.PIPE)
    assert by_fd[8].kind is FdKind.FILE
    assert by_fd[8].cloexec


def test_recorded_c_program_on_system_libuv() -> None:
    lines = (DATA / "c_libuv_leak.txt").read_text().splitlines()
    root = int(lines[0].split()[0])
    life = track(parse_lines(lines), root)
    by_kind = {b.kind: b for b in life.open}
    tcp = by_kind[FdKind.TCP]
    assert [(a.syscall, a.error) for a in tcp.after] == [("connect", "ECONNREFUSED")]
    assert tcp.epoll_added
    opens = [b for b in life.open if b.syscall == "openat" and b.target == "/etc/hostname"]
    assert len(opens) == 2


def test_sockaddr_forms() -> None:
    assert sockaddr('{sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("10.0.0.1")}') == (
        "10.0.0.1:1"
    )
    six = '{sa_family=AF_INET6, sin6_port=htons(8), sin6_addr=inet_pton(AF_INET6, "::1")}'
    assert sockaddr(six) == "[::1]:8"
    assert sockaddr('{sa_family=AF_UNIX, sun_path="/run/x.sock"}') == "/run/x.sock"
    assert sockaddr("{sa_family=AF_NETLINK}") is None
