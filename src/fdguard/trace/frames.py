"""Parse strace -k stack lines into frames and say whose code each frame is.

strace (src/unwind.c) prints one line per frame after the syscall line, in
four shapes:

    > /usr/bin/node(uv__socket+0x24) [0x14acc44]     symbol found
    > /usr/bin/node() [0x14acc44]                     no symbol (JIT code, stripped)
    > unexpected_backtracing_error [0x14acc44]        the unwinder gave up here
    > backtracing_error

Symbols are demangled C++ and may hold parentheses and '+', so the module is
what precedes the first '(' and the offset is after the last '+0x'.

Origins, innermost first, are decided by symbol before module, because both
Node and uvloop link libuv statically: `uv__socket` inside /usr/bin/node is
libuv, `node::TCPWrap::Connect` in the same binary is the runtime.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from typing import Any


class FrameOrigin(enum.StrEnum):
    """Whose code a frame is. Values are part of `trace --json`."""

    SYSTEM = "system"  # libc, the dynamic loader, libstdc++: the syscall's wrapper
    LIBUV = "libuv"
    RUNTIME = "runtime"  # node/v8, CPython, uvloop's Cython layer
    APPLICATION = "application"
    UNKNOWN = "unknown"  # no symbol and no module, or the unwinder failed


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a creation stack, innermost first."""

    module: str | None
    symbol: str | None
    offset: int | None
    address: int | None
    origin: FrameOrigin

    @property
    def label(self) -> str:
        """`symbol (module basename)`, or what is known of it."""
        mod = os.path.basename(self.module) if self.module else "?"
        if self.symbol:
            return f"{self.symbol} ({mod})"
        if self.address is not None:
            return f"0x{self.address:x} ({mod})"
        return mod

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "module": self.module,
            "origin": self.origin.value,
            "address": f"0x{self.address:x}" if self.address is not None else None,
        }


_ADDR = re.compile(r"^(?P<head>.*?) \[0x(?P<addr>[0-9a-fA-F]+)\]$")

_SYSTEM_MODULES = re.compile(
    r"/(?:libc|libpthread|ld-linux[^/]*|libdl|libm|librt|libstdc\+\+|libgcc_s)[.-][^/]*$"
)
_LIBUV_MODULE = re.compile(r"/libuv[^/]*\.so[^/]*$")
_PYTHON_MODULE = re.compile(r"/(?:libpython3[^/]*\.so[^/]*|python3(?:\.\d+)?[^/]*)$")
_RUNTIME_MODULE = re.compile(r"/(?:node|nodejs|libnode\.so[^/]*)$|/uvloop/[^/]*\.so$")
_LIBUV_SYMBOL = re.compile(r"^uv_[A-Za-z0-9_]*$")
_RUNTIME_SYMBOL = re.compile(
    r"^(?:node::|v8::|Builtins_|_?Py[A-Z_]|_Py|PyEval|method_vectorcall|cfunction_|"
    r"slot_tp_|__pyx_|std::)"
)
# libc-internal names that unwinders print for frames of a thread start.
# libuv's static functions that carry no uv_ prefix (src/threadpool.c), named as
# such only inside a binary that links libuv.
_LIBUV_STATIC = frozenset({"worker", "init_threads", "init_once", "post"})
_SYSTEM_SYMBOL = re.compile(r"^(?:__libc_|__GI_|_start$|clone3?$|start_thread$)")


def classify_frame(module: str | None, symbol: str | None) -> FrameOrigin:
    """Whose code this frame is: the symbol decides first, then the module."""
    if symbol:
        if _LIBUV_SYMBOL.match(symbol):
            return FrameOrigin.LIBUV
        if (
            symbol in _LIBUV_STATIC
            and module
            and (_LIBUV_MODULE.search(module) or _RUNTIME_MODULE.search(module))
        ):
            return FrameOrigin.LIBUV
        if _RUNTIME_SYMBOL.match(symbol):
            # std:: inside a runtime binary is the runtime's; elsewhere the app's C++.
            if symbol.startswith("std::") and not (
                module and (_RUNTIME_MODULE.search(module) or _PYTHON_MODULE.search(module))
            ):
                return FrameOrigin.APPLICATION
            return FrameOrigin.RUNTIME
        if _SYSTEM_SYMBOL.match(symbol) and (module is None or _SYSTEM_MODULES.search(module)):
            return FrameOrigin.SYSTEM
    if module is None:
        return FrameOrigin.UNKNOWN
    if _SYSTEM_MODULES.search(module):
        return FrameOrigin.SYSTEM
    if _LIBUV_MODULE.search(module):
        return FrameOrigin.LIBUV
    if _RUNTIME_MODULE.search(module) or _PYTHON_MODULE.search(module):
        return FrameOrigin.RUNTIME
    return FrameOrigin.APPLICATION


def parse_frame(line: str) -> Frame:
    """Parse one ` > ...` stack line (with or without the leading marker)."""
    text = line.strip()
    if text.startswith(">"):
        text = text[1:].strip()
    address: int | None = None
    m = _ADDR.match(text)
    if m:
        text = m.group("head")
        address = int(m.group("addr"), 16)
    paren = text.find("(")
    if paren <= 0 or not text.endswith(")"):
        # "unexpected_backtracing_error", "backtracing_error", "BUG IN ...".
        return Frame(None, None, None, address, FrameOrigin.UNKNOWN)
    module = text[:paren]
    inner = text[paren + 1 : -1]
    symbol: str | None = None
    offset: int | None = None
    if inner:
        sym, plus, off = inner.rpartition("+0x")
        if plus:
            symbol = sym or None
            try:
                offset = int(off, 16)
            except ValueError:
                symbol, offset = inner, None
        else:
            symbol = inner
    return Frame(module, symbol, offset, address, classify_frame(module, symbol))


def creation_site(frames: tuple[Frame, ...]) -> tuple[FrameOrigin, tuple[Frame, ...]]:
    """Who created the fd: the origin of the innermost frame above the system wrapper.

    Returns that origin and, when it is libuv, the contiguous run of libuv
    frames starting there (innermost first). libuv frames further out, below
    application or runtime frames, are the event loop dispatching a callback
    (uv_run, uv__io_poll, uv__run_timers) and do not make libuv the creator.
    """
    i = 0
    while i < len(frames) and frames[i].origin is FrameOrigin.SYSTEM:
        i += 1
    if i == len(frames):
        return FrameOrigin.UNKNOWN, ()
    origin = frames[i].origin
    if origin is not FrameOrigin.LIBUV:
        return origin, ()
    run: list[Frame] = []
    while i < len(frames) and frames[i].origin is FrameOrigin.LIBUV:
        run.append(frames[i])
        i += 1
    return origin, tuple(run)


# libuv frames that dispatch callbacks rather than do work: the event loop and
# the threadpool's worker loop. They sit below the function that made the fd.
_DISPATCH = frozenset(
    {
        "uv_run",
        "uv__io_poll",
        "uv__run_timers",
        "uv__run_idle",
        "uv__run_prepare",
        "uv__run_check",
        "uv__run_pending",
        "uv__run_closing_handles",
        "uv__work_done",
        "uv__async_io",
        "uv__io_cb",
        "worker",
    }
)


def libuv_entry(run: tuple[Frame, ...]) -> str | None:
    """The libuv function that made the fd, named as the caller knows it.

    Within the innermost libuv run, dispatch frames (uv_run, uv__io_poll, the
    threadpool worker) are dropped; of the rest, the outermost public `uv_*`
    name is preferred (uv_fs_open over uv__fs_work), else the outermost
    internal one (uv__server_io over uv__accept).

    A distro's libuv.so keeps only exported symbols, so a static function shows
    as the nearest export plus a large offset (`uv_tcp_init+0x354` is code after
    uv_tcp_init); such names keep their offset so nobody takes them literally.
    """
    work = [f for f in run if f.symbol and f.symbol not in _DISPATCH]
    if not work:
        work = [f for f in run[:1] if f.symbol]
        if not work:
            return None
    public = [f for f in work if f.symbol and not f.symbol.startswith("uv__")]
    f = public[-1] if public else work[-1]
    assert f.symbol is not None
    if (
        f.offset is not None
        and f.offset > _NEAREST_EXPORT_SLACK
        and f.module
        and _LIBUV_MODULE.search(f.module)
    ):
        return f"{f.symbol}+0x{f.offset:x}"
    return f.symbol


# Offsets past this many bytes into an exported libuv function are taken to be
# in a following static function (libuv's exported functions are short).
_NEAREST_EXPORT_SLACK = 0x200


def signature(frames: tuple[Frame, ...], depth: int = 8) -> tuple[str, ...]:
    """A grouping key for a stack: the creation site and a few callers, offsets dropped.

    The system wrapper (libc) is skipped, repeats are collapsed (interpreter and
    JIT trampolines repeat a variable number of times for one code path), and
    the key stops at `depth` frames or where the unwinder gave up: frames far
    from the syscall, or past an unwinding error, tell leak sites apart less
    than they split one site into many groups.
    """
    out: list[str] = []
    started = False
    for f in frames:
        if not started and f.origin is FrameOrigin.SYSTEM:
            continue
        started = True
        if f.symbol:
            key = f.symbol
        elif f.module:
            key = f"?({os.path.basename(f.module)})"
        else:
            break
        if out and out[-1] == key:
            continue
        out.append(key)
        if len(out) >= depth:
            break
    return tuple(out)
