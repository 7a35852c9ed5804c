"""Fault injection for stress runs: syscall faults, a loopback TCP fault proxy, a limit squeeze.

- `syscall`: wrap an unmodified binary in `strace --inject` (any syscall, errno
  or delay, on the Nth call or every Nth) or in libfiu's LD_PRELOAD (no
  ptrace, but only the libc functions libfiu wraps).
- `proxy`: a loopback TCP proxy that adds latency, throttles, resets, holds
  half-open connections, closes slowly, times out or cuts data short.
- `squeeze`: lower a running process's soft RLIMIT_NOFILE to force EMFILE,
  restore it, and check that the service recovers.
"""

from fdguard.faults.proxy import FaultProxy, ProxyFaults
from fdguard.faults.squeeze import SqueezeResult, squeeze
from fdguard.faults.syscall import (
    LIBFIU_POINTS,
    LIBFIU_UNWRAPPED,
    FiuFault,
    SyscallFault,
    fiu_argv,
    strace_argv,
    strace_attach_argv,
)

__all__ = [
    "LIBFIU_POINTS",
    "LIBFIU_UNWRAPPED",
    "FaultProxy",
    "FiuFault",
    "ProxyFaults",
    "SqueezeResult",
    "SyscallFault",
    "fiu_argv",
    "squeeze",
    "strace_argv",
    "strace_attach_argv",
]
