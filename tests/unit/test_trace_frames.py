"""Frame origins (libuv / runtime / application / system) and the creation site."""

from __future__ import annotations

import pytest

from fdguard.trace.frames import (
    Frame,
    FrameOrigin,
    classify_frame,
    creation_site,
    libuv_entry,
    parse_frame,
    signature,
)

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
NODE = "/usr/bin/node"
LIBUV = "/usr/lib/x86_64-linux-gnu/libuv.so.1.0.0"
UVLOOP = "/venv/lib/python3.11/site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so"


@pytest.mark.parametrize(
    ("module", "symbol", "origin"),
    [
        (LIBC, "__socket", FrameOrigin.SYSTEM),
        (NODE, "uv__socket", FrameOrigin.LIBUV),
        (NODE, "uv_fs_open", FrameOrigin.LIBUV),
        (NODE, "worker", FrameOrigin.LIBUV),
        (NODE, "node::TCPWrap::Connect(v8::FunctionCallbackInfo<v8::Value> const&)", "runtime"),
        (NODE, "Builtins_InterpreterEntryTrampoline", FrameOrigin.RUNTIME),
        (NODE, None, FrameOrigin.RUNTIME),
        (LIBUV, "uv_tcp_init", FrameOrigin.LIBUV),
        (LIBUV, None, FrameOrigin.LIBUV),
        (UVLOOP, "uv__accept", FrameOrigin.LIBUV),
        (UVLOOP, "__pyx_f_6uvloop_4loop_9TCPServer__on_listen", FrameOrigin.RUNTIME),
        ("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0", "_PyEval_EvalFrameDefault", "runtime"),
        ("/usr/local/bin/python3.11", "sock_initobj", FrameOrigin.RUNTIME),
        ("/opt/app/server", "leaky_open", FrameOrigin.APPLICATION),
        ("/opt/app/server", "worker", FrameOrigin.APPLICATION),
        (None, None, FrameOrigin.UNKNOWN),
    ],
)
def test_classify(module: str | None, symbol: str | None, origin: str) -> None:
    assert classify_frame(module, symbol) == FrameOrigin(origin)


def _frames(*spec: tuple[str, str]) -> tuple[Frame, ...]:
    return tuple(parse_frame(f" > {m}({s}+0x10) [0x1]") for m, s in spec)


def test_accept_in_libuv_names_the_function_not_the_loop() -> None:
    frames = _frames(
        (LIBC, "accept4"),
        (NODE, "uv__accept"),
        (NODE, "uv__server_io"),
        (NODE, "uv__io_poll"),
        (NODE, "uv_run"),
        (NODE, "node::SpinEventLoopInternal(node::Environment*)"),
    )
    origin, run = creation_site(frames)
    assert origin is FrameOrigin.LIBUV
    assert libuv_entry(run) == "uv__server_io"


def test_app_open_in_a_libuv_callback_is_the_apps() -> None:
    frames = _frames(
        (LIBC, "__open64"),
        ("/opt/app/server", "leaky_open"),
        ("/opt/app/server", "on_read"),
        (LIBUV, "uv__read"),
        (LIBUV, "uv_run"),
    )
    origin, run = creation_site(frames)
    assert origin is FrameOrigin.APPLICATION
    assert run == ()


def test_public_api_preferred_and_stripped_libuv_keeps_its_offset() -> None:
    sync_open = _frames((LIBC, "__open64"), (NODE, "uv__fs_work"), (NODE, "uv_fs_open"))
    assert libuv_entry(creation_site(sync_open)[1]) == "uv_fs_open"
    stripped = (
        parse_frame(f" > {LIBC}(__socket+0x7) [0x1]"),
        parse_frame(f" > {LIBUV}(uv_is_active+0x150) [0xfe70]"),
        parse_frame(f" > {LIBUV}(uv_tcp_init+0x354) [0x1c2a4]"),
        parse_frame(" > /opt/app/server(leaky_connect+0x70) [0x13b8]"),
    )
    assert libuv_entry(creation_site(stripped)[1]) == "uv_tcp_init+0x354"


def test_signature_folds_interpreter_repeats_and_addresses() -> None:
    a = _frames(
        (LIBC, "__socket"),
        (NODE, "uv__socket"),
        (NODE, "Builtins_InterpreterEntryTrampoline"),
        (NODE, "Builtins_InterpreterEntryTrampoline"),
        (NODE, "Builtins_JSEntry"),
    )
    b = _frames(
        (LIBC, "__socket"),
        (NODE, "uv__socket"),
        (NODE, "Builtins_InterpreterEntryTrampoline"),
        (NODE, "Builtins_JSEntry"),
    )
    assert signature(a) == signature(b)
    assert creation_site(()) == (FrameOrigin.UNKNOWN, ())


def test_signature_skips_the_wrapper_and_stops_where_unwinding_failed() -> None:
    base = _frames((LIBC, "accept4"), (NODE, "uv__accept"), (NODE, "uv__server_io"))
    broken = (*base, parse_frame(" > unexpected_backtracing_error [0x7f00]"), *base)
    assert signature(broken) == ("uv__accept", "uv__server_io")
    deep = base + _frames(*((NODE, f"node::f{i}()") for i in range(20)))
    assert len(signature(deep)) == 8
    assert signature(deep)[0] == "uv__accept"
