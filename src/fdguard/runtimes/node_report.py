"""Node.js handle views from its diagnostic report: parse one, or have a process write one.

Node's report (`process.report`, --report-on-signal) has a `libuv` section listing
every handle of the main thread's loop -- type, active/referenced flags and, for
streams and UDP, the fd -- and `header.componentVersions` with the libuv and
Node versions. It does not list fds opened through the fs API (those are no
handles) nor the handles of worker threads' loops (under `workers`).

Getting one from a process started with `--report-on-signal`: send its report
signal (SIGUSR2 unless --report-signal says otherwise), wait for the file to
appear in the report directory (--report-directory, else the process's cwd),
read it and remove it: the report holds the process's environment, so it must
not be left behind. A process started with --report-filename=stdout|stderr
writes to its own output, which fdguard cannot read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fdguard.procfs.maps import (
    cwd_path,
    list_in_root,
    read_environ,
    read_in_root,
    remove_in_root,
    stat_in_root,
)
from fdguard.procfs.process import DEFAULT_ROOT, ProcessDir
from fdguard.runtimes.handles import OWNER_HANDLE, Handle, HandleView

_VALUE_OPTS = {"--report-signal", "--report-directory", "--report-dir", "--report-filename",
               "-r", "--require", "--import", "--loader", "--experimental-loader", "-e",
               "--eval", "-p", "--print", "--inspect-port", "--title", "--conditions", "-C"}


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """How a Node process was told to write reports (from its argv and NODE_OPTIONS)."""

    on_signal: bool
    signal: str = "SIGUSR2"
    directory: str | None = None
    filename: str | None = None


def parse_report_settings(argv: Sequence[str], node_options: str = "") -> ReportSettings:
    """Read the --report-* options of a node command line and of NODE_OPTIONS.

    Only options before the script name count: later arguments are the application's.
    """
    opts: dict[str, str] = {}
    on_signal = False

    def scan(args: Sequence[str], stop_at_script: bool) -> None:
        nonlocal on_signal
        i = 0
        while i < len(args):
            a = args[i]
            if not a.startswith("-"):
                if stop_at_script:
                    return
                i += 1
                continue
            if a == "--":
                return
            name, eq, value = a.partition("=")
            if name == "--report-on-signal":
                on_signal = True
            elif name in _VALUE_OPTS:
                if not eq and i + 1 < len(args):
                    i += 1
                    value = args[i]
                opts[name] = value
            i += 1

    with contextlib.suppress(ValueError):
        scan(shlex.split(node_options), stop_at_script=False)
    scan(list(argv[1:]), stop_at_script=True)
    directory = opts.get("--report-directory") or opts.get("--report-dir")
    return ReportSettings(
        on_signal=on_signal,
        signal=opts.get("--report-signal", "SIGUSR2"),
        directory=directory or None,
        filename=opts.get("--report-filename") or None,
    )


def _endpoint(ep: Any) -> str | None:
    if not isinstance(ep, dict):
        return None
    ip = ep.get("ip4") or ep.get("ip6")
    if ip is None:
        return ep.get("host") if isinstance(ep.get("host"), str) else None
    port = ep.get("port")
    return f"[{ip}]:{port}" if ep.get("ip6") else f"{ip}:{port}"


def _handles(entries: Any, where: str) -> list[Handle]:
    handles: list[Handle] = []
    for h in entries or ():
        if not isinstance(h, dict) or h.get("type") == "loop":
            continue
        fd = h.get("fd")
        details = []
        local = _endpoint(h.get("localEndpoint"))
        remote = _endpoint(h.get("remoteEndpoint"))
        if local:
            details.append(local)
        if remote:
            details.append(f"-> {remote}")
        if h.get("filename"):
            details.append(str(h["filename"]))
        if h.get("signum") is not None:
            details.append(f"signal {h.get('signal', h['signum'])}")
        if where:
            details.append(f"[{where}]")
        handles.append(
            Handle(
                type=str(h.get("type", "?")),
                fd=fd if isinstance(fd, int) and fd >= 0 else None,
                owns=OWNER_HANDLE,
                active=h.get("is_active"),
                referenced=h.get("is_referenced"),
                detail=" ".join(details) or None,
            )
        )
    return handles


def parse_report(doc: dict[str, Any], source: str) -> HandleView:
    """The handle view in one Node diagnostic report (the parsed JSON document)."""
    handles = _handles(doc.get("libuv"), "")
    # Worker threads run their own loops; their reports nest under "workers".
    for i, worker in enumerate(doc.get("workers") or ()):
        if isinstance(worker, dict):
            handles.extend(_handles(worker.get("libuv"), f"worker {i}"))
    header = doc.get("header") or {}
    versions: dict[str, str] = {}
    comp = header.get("componentVersions") or {}
    if isinstance(comp.get("uv"), str):
        versions["uv"] = comp["uv"]
    if isinstance(header.get("nodejsVersion"), str):
        versions["node"] = header["nodejsVersion"]
    notes = ["the report lists the handles of the main loop and of worker threads' "
             "loops; fds opened through the fs API are no handles and are not in it"]
    return HandleView(source=source, handles=tuple(handles), versions=versions,
                      notes=tuple(notes))


def node_settings(pid: int, *, root: str = DEFAULT_ROOT) -> ReportSettings:
    """The report settings `pid` was started with (argv and NODE_OPTIONS).

    Raises:
        NoSuchProcess, AccessDenied.
    """
    with ProcessDir(pid, root=root) as proc:
        argv = proc.read_cmdline()
    env = read_environ(pid, root=root)
    return parse_report_settings(argv, env.get("NODE_OPTIONS", ""))


def _listing(pid: int, directory: str, root: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in list_in_root(pid, directory, root=root):
        if name.endswith(".json"):
            with contextlib.suppress(OSError):
                out[name] = stat_in_root(pid, f"{directory}/{name}", root=root).st_mtime_ns
    return out


def request_report(
    pid: int,
    settings: ReportSettings,
    *,
    root: str = DEFAULT_ROOT,
    timeout: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> HandleView:
    """Make a Node process started with --report-on-signal write a report; read and remove it.

    Args:
        pid: the Node process.
        settings: from `node_settings(pid)`; must have on_signal.
        timeout: how long to wait for the report file.

    Raises:
        NoSuchProcess, AccessDenied: reading the process.
        TimeoutError: no report appeared (the app may have moved process.report.directory).
        ValueError: the process was not started with --report-on-signal, or writes
            reports to stdout/stderr.
    """
    if not settings.on_signal:
        raise ValueError("the process was not started with --report-on-signal")
    if settings.filename in ("stdout", "stderr"):
        raise ValueError(f"the process writes its reports to {settings.filename}")
    directory = settings.directory or cwd_path(pid, root=root)
    if not directory.startswith("/"):
        directory = os.path.join(cwd_path(pid, root=root), directory)
    before = _listing(pid, directory, root)
    signum = signal.Signals[settings.signal if settings.signal.startswith("SIG")
                            else "SIG" + settings.signal]
    os.kill(pid, signum)
    pattern = re.compile(rf"^report\.\d{{8}}\.\d{{6}}\.{pid}\.\d+\.\d+\.json$")
    deadline = clock() + timeout
    while True:
        now = _listing(pid, directory, root)
        for name, mtime in now.items():
            is_new = pattern.match(name) and name not in before
            rewritten = name == settings.filename and before.get(name) != mtime
            if not (is_new or rewritten):
                continue
            path = f"{directory}/{name}"
            try:
                doc = json.loads(read_in_root(pid, path, root=root, limit=256 << 20))
            except (OSError, ValueError):
                continue  # still being written: Node writes it in several chunks
            with contextlib.suppress(OSError):
                remove_in_root(pid, path, root=root)
            return parse_report(doc, f"node-report:{settings.signal}")
        if clock() >= deadline:
            raise TimeoutError(f"no report from pid {pid} in {directory} after {timeout:.0f}s")
        # Node writes the report from its main thread between two JS ticks: poll the
        # directory rather than block, so a busy process cannot hang fdguard.
        pause(0.02)
