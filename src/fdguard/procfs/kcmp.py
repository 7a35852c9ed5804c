"""Ask the kernel whether two fds, in two processes, are the same open file.

A path in both fd tables ("/dev/null") says nothing about sharing: each open()
makes a new open file description. kcmp(KCMP_FILE) compares the descriptions
themselves, which is what "inherited from the parent" means. It needs ptrace
rights over both processes (and a kernel with CONFIG_KCMP); where it is refused
the answer is None, unknown.
"""

from __future__ import annotations

import ctypes
import errno
import platform

_KCMP_FILE = 0
# kcmp's number differs per architecture (it predates the unified table).
_SYS_KCMP = {"x86_64": 312, "aarch64": 272, "i686": 349, "armv7l": 378}.get(platform.machine())

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def same_open_file(pid1: int, fd1: int, pid2: int, fd2: int) -> bool | None:
    """True if fd1 of pid1 and fd2 of pid2 share one open file description; None if unknown."""
    if _SYS_KCMP is None:
        return None
    res = _syscall(
        _SYS_KCMP,
        ctypes.c_int(pid1),
        ctypes.c_int(pid2),
        ctypes.c_int(_KCMP_FILE),
        ctypes.c_ulong(fd1),
        ctypes.c_ulong(fd2),
    )
    if res < 0:
        # EBADF: one of the fds closed meanwhile; EPERM/ENOSYS: cannot tell.
        return False if ctypes.get_errno() == errno.EBADF else None
    return bool(res == 0)
