"""A ctypes binding to any libuv shared object, sized at run time so one binding fits every 1.x.

libuv's public structs change size between releases (and between builds with
different options), so nothing here declares a struct layout: loops, handles
and requests are opaque byte buffers of `uv_loop_size()`, `uv_handle_size(t)`
and `uv_req_size(t)` bytes. The handle and request type enums have kept their
order since 1.0 (UV_HANDLE_TYPE_MAP / UV_REQ_TYPE_MAP only ever grew at the
end), and the two structs a caller must fill in itself — uv_process_options_t
and uv_stdio_container_t — have kept their layout since 1.0, so those are the
only layouts spelled out.

Any object exporting the uv_* symbols works: Debian's libuv.so.1, a build from
`fdguard.lab.build`, or uvloop's extension module, which links libuv
statically and exports its symbols (loading it with ctypes runs no Python
init code).

This module runs inside the scenario child process (`fdguard.lab.child`); the
parent never loads a libuv under test into itself.
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Callable
from typing import Any

from fdguard.errors import LabUnsupported


class HandleType(enum.IntEnum):
    """uv_handle_type, in UV_HANDLE_TYPE_MAP order (stable since 1.0)."""

    ASYNC = 1
    CHECK = 2
    FS_EVENT = 3
    FS_POLL = 4
    HANDLE = 5
    IDLE = 6
    NAMED_PIPE = 7
    POLL = 8
    PREPARE = 9
    PROCESS = 10
    STREAM = 11
    TCP = 12
    TIMER = 13
    TTY = 14
    UDP = 15
    SIGNAL = 16


class ReqType(enum.IntEnum):
    """uv_req_type, in UV_REQ_TYPE_MAP order (stable since 1.0)."""

    REQ = 1
    CONNECT = 2
    WRITE = 3
    SHUTDOWN = 4
    UDP_SEND = 5
    FS = 6
    WORK = 7
    GETADDRINFO = 8
    GETNAMEINFO = 9


UV_RUN_DEFAULT = 0
UV_RUN_ONCE = 1
UV_RUN_NOWAIT = 2

# uv_stdio_flags
UV_IGNORE = 0x00
UV_CREATE_PIPE = 0x01
UV_INHERIT_FD = 0x02
UV_READABLE_PIPE = 0x10
UV_WRITABLE_PIPE = 0x20

SOCKADDR_BYTES = 128  # sizeof(struct sockaddr_storage)

VoidP = ctypes.c_void_p
CloseCb = ctypes.CFUNCTYPE(None, VoidP)
ConnectCb = ctypes.CFUNCTYPE(None, VoidP, ctypes.c_int)
ConnectionCb = ctypes.CFUNCTYPE(None, VoidP, ctypes.c_int)
AsyncCb = ctypes.CFUNCTYPE(None, VoidP)
SignalCb = ctypes.CFUNCTYPE(None, VoidP, ctypes.c_int)
ExitCb = ctypes.CFUNCTYPE(None, VoidP, ctypes.c_int64, ctypes.c_int)
FsEventCb = ctypes.CFUNCTYPE(None, VoidP, ctypes.c_char_p, ctypes.c_int, ctypes.c_int)
FsPollCb = ctypes.CFUNCTYPE(None, VoidP, ctypes.c_int, VoidP, VoidP)
AllocCb = ctypes.CFUNCTYPE(None, VoidP, ctypes.c_size_t, VoidP)
ReadCb = ctypes.CFUNCTYPE(None, VoidP, ctypes.c_ssize_t, VoidP)
MallocFn = ctypes.CFUNCTYPE(VoidP, ctypes.c_size_t)
ReallocFn = ctypes.CFUNCTYPE(VoidP, VoidP, ctypes.c_size_t)
CallocFn = ctypes.CFUNCTYPE(VoidP, ctypes.c_size_t, ctypes.c_size_t)
FreeFn = ctypes.CFUNCTYPE(None, VoidP)


class StdioContainer(ctypes.Structure):
    """uv_stdio_container_t: flags, then a union of a stream pointer and an fd."""

    _fields_ = [("flags", ctypes.c_int), ("data", ctypes.c_void_p)]


class ProcessOptions(ctypes.Structure):
    """uv_process_options_t (layout unchanged since 1.0)."""

    _fields_ = [
        ("exit_cb", ExitCb),
        ("file", ctypes.c_char_p),
        ("args", ctypes.POINTER(ctypes.c_char_p)),
        ("env", ctypes.POINTER(ctypes.c_char_p)),
        ("cwd", ctypes.c_char_p),
        ("flags", ctypes.c_uint),
        ("stdio_count", ctypes.c_int),
        ("stdio", ctypes.POINTER(StdioContainer)),
        ("uid", ctypes.c_uint),
        ("gid", ctypes.c_uint),
    ]


# name -> (restype, argtypes). Only what the scenarios call; a symbol a release
# lacks is reported as LabUnsupported when first used, not at load time.
_I = ctypes.c_int
_U = ctypes.c_uint
_SZ = ctypes.c_size_t
_S = ctypes.c_char_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "uv_version": (_U, []),
    "uv_version_string": (_S, []),
    "uv_strerror": (_S, [_I]),
    "uv_err_name": (_S, [_I]),
    "uv_loop_size": (_SZ, []),
    "uv_handle_size": (_SZ, [_I]),
    "uv_req_size": (_SZ, [_I]),
    "uv_loop_init": (_I, [VoidP]),
    "uv_loop_close": (_I, [VoidP]),
    "uv_run": (_I, [VoidP, _I]),
    "uv_stop": (None, [VoidP]),
    "uv_close": (None, [VoidP, CloseCb]),
    "uv_is_closing": (_I, [VoidP]),
    "uv_replace_allocator": (_I, [MallocFn, ReallocFn, CallocFn, FreeFn]),
    "uv_ip4_addr": (_I, [_S, _I, VoidP]),
    "uv_ip6_addr": (_I, [_S, _I, VoidP]),
    "uv_tcp_init": (_I, [VoidP, VoidP]),
    "uv_tcp_open": (_I, [VoidP, _I]),
    "uv_tcp_bind": (_I, [VoidP, VoidP, _U]),
    "uv_tcp_connect": (_I, [VoidP, VoidP, VoidP, ConnectCb]),
    "uv_tcp_getsockname": (_I, [VoidP, VoidP, ctypes.POINTER(_I)]),
    "uv_listen": (_I, [VoidP, _I, ConnectionCb]),
    "uv_accept": (_I, [VoidP, VoidP]),
    "uv_read_start": (_I, [VoidP, AllocCb, ReadCb]),
    "uv_read_stop": (_I, [VoidP]),
    "uv_pipe_init": (_I, [VoidP, VoidP, _I]),
    "uv_pipe_open": (_I, [VoidP, _I]),
    "uv_pipe_bind": (_I, [VoidP, _S]),
    "uv_pipe_connect": (None, [VoidP, VoidP, _S, ConnectCb]),
    "uv_pipe_pending_count": (_I, [VoidP]),
    "uv_udp_init": (_I, [VoidP, VoidP]),
    "uv_udp_bind": (_I, [VoidP, VoidP, _U]),
    "uv_udp_getsockname": (_I, [VoidP, VoidP, ctypes.POINTER(_I)]),
    "uv_udp_try_send": (_I, [VoidP, VoidP, _U, VoidP]),
    "uv_tty_init": (_I, [VoidP, VoidP, _I, _I]),
    "uv_fs_open": (_I, [VoidP, VoidP, _S, _I, _I, VoidP]),
    "uv_fs_close": (_I, [VoidP, VoidP, _I, VoidP]),
    "uv_fs_copyfile": (_I, [VoidP, VoidP, _S, _S, _I, VoidP]),
    "uv_fs_scandir": (_I, [VoidP, VoidP, _S, _I, VoidP]),
    "uv_fs_req_cleanup": (None, [VoidP]),
    "uv_fs_event_init": (_I, [VoidP, VoidP]),
    "uv_fs_event_start": (_I, [VoidP, FsEventCb, _S, _U]),
    "uv_fs_event_stop": (_I, [VoidP]),
    "uv_fs_poll_init": (_I, [VoidP, VoidP]),
    "uv_fs_poll_start": (_I, [VoidP, FsPollCb, _S, _U]),
    "uv_fs_poll_stop": (_I, [VoidP]),
    "uv_signal_init": (_I, [VoidP, VoidP]),
    "uv_signal_start": (_I, [VoidP, SignalCb, _I]),
    "uv_signal_stop": (_I, [VoidP]),
    "uv_spawn": (_I, [VoidP, VoidP, ctypes.POINTER(ProcessOptions)]),
    "uv_async_init": (_I, [VoidP, VoidP, AsyncCb]),
    "uv_async_send": (_I, [VoidP]),
    "uv_dlopen": (_I, [_S, VoidP]),
    "uv_dlclose": (None, [VoidP]),
}

# sizeof(uv_lib_t) on Linux: a void* handle and a char* errmsg.
UV_LIB_BYTES = 16


def _noop_close(_handle: int | None) -> None:
    return None


NOOP_CLOSE = CloseCb(_noop_close)


class Libuv:
    """One loaded libuv: typed functions, run-time sizes, and buffer allocation.

    Buffers handed to libuv are kept alive by this object until `release()`,
    because libuv may still point at a handle after the call that used it
    (until its close callback ran).
    """

    def __init__(self, path: str, *, mode: int = ctypes.RTLD_LOCAL) -> None:
        self.path = path
        self.lib = ctypes.CDLL(path, mode=mode)
        self._fns: dict[str, Any] = {}
        self._keep: list[object] = []

    def fn(self, name: str) -> Any:
        """The typed foreign function `name`; LabUnsupported if this libuv lacks it."""
        cached = self._fns.get(name)
        if cached is not None:
            return cached
        try:
            func = getattr(self.lib, name)
        except AttributeError as err:
            raise LabUnsupported(f"{name} is not exported by {self.path}") from err
        restype, argtypes = _SIGNATURES[name]
        func.restype = restype
        func.argtypes = argtypes
        self._fns[name] = func
        return func

    def __getattr__(self, name: str) -> Any:
        if name.startswith("uv_"):
            return self.fn(name)
        raise AttributeError(name)

    @property
    def version(self) -> str:
        """The version string this libuv reports about itself."""
        raw: bytes = self.fn("uv_version_string")()
        return raw.decode()

    def err_name(self, code: int) -> str:
        """`UV_ECONNREFUSED` style name of a libuv status ("0" for success)."""
        if code >= 0:
            return str(code)
        raw: bytes = self.fn("uv_err_name")(code)
        return raw.decode()

    def buffer(self, size: int) -> ctypes.Array[ctypes.c_char]:
        """A zeroed buffer kept alive as long as this binding."""
        buf = ctypes.create_string_buffer(size)
        self._keep.append(buf)
        return buf

    def keep(self, obj: object) -> None:
        """Keep a ctypes object (callback, buffer) alive as long as this binding."""
        self._keep.append(obj)

    def new_loop(self) -> int:
        """Memory for a uv_loop_t (not initialised), as an address."""
        return ctypes.addressof(self.buffer(int(self.fn("uv_loop_size")())))

    def new_handle(self, kind: HandleType) -> int:
        """Memory for a handle of type `kind`, as an address."""
        return ctypes.addressof(self.buffer(int(self.fn("uv_handle_size")(int(kind)))))

    def new_req(self, kind: ReqType) -> int:
        """Memory for a request of type `kind`, as an address."""
        return ctypes.addressof(self.buffer(int(self.fn("uv_req_size")(int(kind)))))

    def ip4(self, host: str, port: int) -> int:
        """A struct sockaddr_in for `host:port`, as an address."""
        buf = self.buffer(SOCKADDR_BYTES)
        rc = self.fn("uv_ip4_addr")(host.encode(), port, buf)
        if rc != 0:
            raise ValueError(f"bad IPv4 address {host}: {self.err_name(rc)}")
        return ctypes.addressof(buf)

    def close(self, handle: int, cb: Callable[[int | None], None] | None = None) -> None:
        """uv_close(handle, cb) with the callback kept alive."""
        if cb is None:
            self.fn("uv_close")(handle, NOOP_CLOSE)
            return
        ccb = CloseCb(cb)
        self.keep(ccb)
        self.fn("uv_close")(handle, ccb)

    def release(self) -> None:
        """Drop the buffers and callbacks kept alive (only once the loop is closed)."""
        self._keep.clear()
