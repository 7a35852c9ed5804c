"""A verdict for every fd -- libuv's own, the application's, or nobody's -- with the evidence.

`explain(pid)` joins four sources: the classified snapshot (what the kernel
shows), the runtime (`runtimes.detect`), the loops and their own fds
(`runtimes.loops`, from epoll interest lists) and, when one can be had, a
handle view (what libuv and the application say they hold: Node's diagnostic
report, or fdguard's agent). `attribute()` is the pure join.

Verdicts, first match wins:
  loop-internal  an fd libuv opened for a loop or for the process (epoll, wakeup
                 eventfd, signal pipes, io_uring ring, inotify, EMFILE reserve)
  stdio          fds 0-2
  handle         owned by a live handle or fd-owning object of the application
                 (active, inactive or closing): the application holds it
  fs             a file, directory or device opened by path (the fs API opens
                 files without handles), or a file object the agent lists
  inherited      the parent holds the same open object (and no handle claims it)
  unowned        a socket, pipe or kernel object that no handle and no known owner
                 claims: the suspects for a leak inside libuv or native code

Honesty rules (DESIGN.md): "unowned" is said with certainty only when a handle
view is complete for the loop concerned; without one, verdicts rest on
heuristics -- epoll membership, kinds, TCP states, O_CLOEXEC, creation order --
and the summary names them. libuv itself creates every fd with O_CLOEXEC
(uv__open_cloexec, SOCK_CLOEXEC, accept4, pipe2, eventfd EFD_CLOEXEC), and so
do Node's fs API and Python (PEP 446): an fd without it was inherited or made
by code outside both, which the evidence says.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fdguard.errors import FdguardError
from fdguard.inspect import snapshot
from fdguard.model import Fd, FdInfo, FdKind, Snapshot, TcpState
from fdguard.procfs.kcmp import same_open_file
from fdguard.procfs.process import DEFAULT_ROOT, ProcessDir
from fdguard.runtimes.agent_client import AgentUnavailable, has_agent_socket, query_agent
from fdguard.runtimes.detect import RuntimeInfo, detect, runtime_json
from fdguard.runtimes.handles import OWNER_FS, OWNER_INTERNAL, Handle, HandleView
from fdguard.runtimes.loops import LoopMap, find_loops
from fdguard.runtimes.node_inspector import InspectorError, inspector_report
from fdguard.runtimes.node_report import node_settings, request_report
from fdguard.runtimes.published import Published, read_published


class Verdict(enum.StrEnum):
    """Whose an fd is. Values are the JSON contract of `fdguard explain --json`."""

    LOOP_INTERNAL = "loop-internal"
    HANDLE = "handle"
    FS = "fs"
    STDIO = "stdio"
    INHERITED = "inherited"
    UNOWNED = "unowned"


_PATH_KINDS = frozenset(
    {FdKind.FILE, FdKind.DIR, FdKind.CHARDEV, FdKind.BLOCKDEV, FdKind.FIFO, FdKind.MEMFD}
)

HEURISTIC_EPOLL = "epoll interest lists (a polled fd belongs to a live handle)"
HEURISTIC_ORDER = "creation order (a loop's own fds follow its epoll fd)"
HEURISTIC_KIND = "kinds (files and devices are opened by path, not by handles)"
HEURISTIC_TCP = "TCP states (a never-connected socket nobody polls is a suspect)"
HEURISTIC_CLOEXEC = "the parent's fds and O_CLOEXEC flags (inherited fds)"


@dataclass(frozen=True, slots=True)
class FdVerdict:
    """One fd with its verdict, the evidence, and whether the evidence is conclusive."""

    fd: Fd
    verdict: Verdict
    evidence: str
    certain: bool
    loop: int | None = None
    role: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = self.fd.to_json()
        out["verdict"] = self.verdict.value
        out["evidence"] = self.evidence
        out["certain"] = self.certain
        if self.loop is not None:
            out["loop"] = self.loop
        if self.role is not None:
            out["role"] = self.role
        return out


@dataclass(frozen=True, slots=True)
class Summary:
    """Expected (what libuv and the application say they hold) against actual fds."""

    expected: int
    actual: int
    unexplained: int
    confidence: str
    basis: tuple[str, ...]
    by_verdict: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "actual": self.actual,
            "unexplained": self.unexplained,
            "confidence": self.confidence,
            "basis": list(self.basis),
            "by_verdict": dict(self.by_verdict),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """The answer of `explain(pid)`."""

    snapshot: Snapshot
    runtime: RuntimeInfo | None
    loops: LoopMap
    view: HandleView | None
    fds: tuple[FdVerdict, ...]
    summary: Summary
    notes: tuple[str, ...] = ()
    published: Published | None = None

    def to_json(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "pid": snap.pid,
            "start_time": snap.process.start_time,
            "command": list(snap.command),
            "limits": snap.limits.to_json(),
            "runtime": runtime_json(self.runtime),
            "loops": [lp.to_json() for lp in self.loops.loops],
            "process_internal_fds": [i.to_json() for i in self.loops.process_wide],
            "handle_view": self.view.to_json() if self.view is not None else None,
            "fds": [v.to_json() for v in self.fds],
            "summary": self.summary.to_json(),
            "published": self.published.to_json() if self.published is not None else None,
            "notes": list(self.notes),
        }


def _same_object(fd: Fd, parent_targets: frozenset[str], inherited: frozenset[int]) -> bool:
    if fd.fd in inherited:
        return True
    if fd.kind in _PATH_KINDS:
        # A path in both tables is no proof (each open() is a new open file);
        # only kcmp, via `inherited`, can tell.
        return False
    target = fd.target
    if fd.kind.is_socket and fd.inode is not None:
        target = f"socket:[{fd.inode}]"
    return target is not None and target in parent_targets


def _handle_evidence(h: Handle, view: HandleView, fd: Fd) -> str:
    text = f"{view.source}: {h.describe()}"
    if fd.state is TcpState.CLOSE_WAIT:
        text += "; CLOSE-WAIT: the peer hung up and the application has not closed it"
    return text


def attribute(
    snap: Snapshot,
    loops: LoopMap,
    view: HandleView | None,
    *,
    flags: Mapping[int, int] | None = None,
    parent_targets: frozenset[str] = frozenset(),
    inherited: frozenset[int] = frozenset(),
) -> tuple[tuple[FdVerdict, ...], Summary]:
    """Give every fd of `snap` a verdict (pure: no I/O).

    Args:
        snap: the classified fds.
        loops: the libuv loops found in it (empty when the process has no libuv).
        view: a handle view, or None for heuristic mode.
        flags: open-file flags by fd, where known (fdinfo).
        parent_targets: the parent's fd link targets ("socket:[123]", "pipe:[7]"...):
            sockets and pipes are one object per inode, so a shared target is
            a shared object. Paths are not: see `inherited`.
        inherited: fds known to share their open file with the parent (kcmp).
    """
    flags = dict(flags or {})
    owned = view.by_fd() if view is not None else {}
    out: list[FdVerdict] = []
    used: set[str] = set()
    uncertain = 0

    def cloexec(fd: Fd) -> bool | None:
        f = flags.get(fd.fd, fd.info.flags if fd.info is not None else None)
        return None if f is None else bool(f & FdInfo.O_CLOEXEC)

    for fd in snap.fds:
        n = fd.fd
        internal = loops.by_fd.get(n)
        handle = owned.get(n)
        loop_of = loops.watched_by.get(n)
        if internal is not None:
            used.add(HEURISTIC_ORDER if not internal.certain else HEURISTIC_EPOLL)
            v = FdVerdict(fd, Verdict.LOOP_INTERNAL,
                          f"libuv {internal.role}: {internal.evidence}", internal.certain,
                          internal.loop, internal.role)
        elif handle is not None and handle.owns == OWNER_INTERNAL:
            v = FdVerdict(fd, Verdict.LOOP_INTERNAL, f"{view.source if view else ''}: "
                          f"{handle.describe()}", True, loop_of, handle.type)
        elif n <= 2:
            ev = "standard stream"
            if handle is not None and view is not None:
                ev += f"; {_handle_evidence(handle, view, fd)}"
            v = FdVerdict(fd, Verdict.STDIO, ev, True, loop_of)
        elif handle is not None and view is not None:
            verdict = Verdict.FS if handle.owns == OWNER_FS else Verdict.HANDLE
            v = FdVerdict(fd, verdict, _handle_evidence(handle, view, fd), True, loop_of)
        elif _same_object(fd, parent_targets, inherited):
            # The same open object in the parent: handed down at fork (or passed over
            # a unix socket). Node marks inherited fds O_CLOEXEC at startup, so the
            # flag alone proves nothing either way.
            used.add(HEURISTIC_CLOEXEC)
            flag = {False: "; not O_CLOEXEC", True: "", None: ""}[cloexec(fd)]
            v = FdVerdict(fd, Verdict.INHERITED,
                          f"the parent process holds the same object{flag}", True)
        elif loop_of is not None:
            used.add(HEURISTIC_EPOLL)
            ev = f"in the interest list of loop {loop_of}: libuv polls it for a live handle"
            if view is not None:
                ev += f" ({view.source} does not list it: a loop it does not cover)"
            v = FdVerdict(fd, Verdict.HANDLE, ev, False, loop_of)
        elif view is None and not loops.loops and fd.kind is FdKind.EPOLL:
            used.add(HEURISTIC_KIND)
            v = FdVerdict(fd, Verdict.HANDLE, "an epoll instance in a process without libuv: "
                          "the application's own event loop", False)
        elif fd.kind in _PATH_KINDS:
            used.add(HEURISTIC_KIND)
            ev = (f"{fd.kind.value} opened by path and held by no handle: fs API "
                  "(uv_fs_open / fs.open / open()) or direct open()")
            v = FdVerdict(fd, Verdict.FS, ev, view is not None)
        else:
            v = _unclaimed(fd, view, cloexec(fd), used)
        if not v.certain:
            uncertain += 1
        out.append(v)

    counts = Counter(v.verdict.value for v in out)
    unexplained = counts.get(Verdict.UNOWNED.value, 0)
    expected = sum(counts.get(k.value, 0) for k in
                   (Verdict.LOOP_INTERNAL, Verdict.HANDLE, Verdict.STDIO))
    if view is not None:
        expected += sum(1 for v in out if v.verdict is Verdict.FS and v.certain)
    basis: list[str] = []
    if view is not None:
        basis.append(f"handle view from {view.source}")
    basis.extend(sorted(used))
    if view is None:
        confidence = "low"
        basis.insert(0, "no handle view: verdicts rest on heuristics")
    elif uncertain:
        confidence = "medium"
    else:
        confidence = "high"
    summary = Summary(
        expected=expected,
        actual=len(out),
        unexplained=unexplained,
        confidence=confidence,
        basis=tuple(basis),
        by_verdict=dict(counts.most_common()),
    )
    return tuple(out), summary


def _unclaimed(fd: Fd, view: HandleView | None, cloexec: bool | None,
               used: set[str]) -> FdVerdict:
    """A socket, pipe or kernel object that nothing above claimed."""
    flag_note = ""
    if cloexec is False:
        used.add(HEURISTIC_CLOEXEC)
        flag_note = ("; not O_CLOEXEC, which libuv always sets: native code made it, or a "
                     "parent that has since exited handed it down")
    if view is not None:
        return FdVerdict(fd, Verdict.UNOWNED,
                         f"no handle in {view.source} owns it and it is no libuv loop "
                         f"internal{flag_note}", True)
    if fd.kind.is_tcp and fd.state is not None and fd.state is not TcpState.CLOSE:
        used.add(HEURISTIC_TCP)
        return FdVerdict(fd, Verdict.HANDLE,
                         f"{fd.state.value} TCP socket not polled now: libuv stops polling a "
                         "stream that is not reading (paused, or after EOF); no handle view "
                         "to confirm", False)
    used.add(HEURISTIC_TCP if fd.kind.is_tcp else HEURISTIC_EPOLL)
    what = ("TCP socket never connected (CLOSE)" if fd.kind.is_tcp
            else f"{fd.kind.value} no loop polls")
    return FdVerdict(fd, Verdict.UNOWNED,
                     f"{what}, and not a libuv loop internal{flag_note}", False)


# -- the facade ---------------------------------------------------------------

VIEW_AUTO = "auto"
VIEW_NONE = "none"
VIEW_REPORT = "report"
VIEW_AGENT = "agent"
VIEW_INSPECTOR = "inspector"
VIEW_MODES = (VIEW_AUTO, VIEW_NONE, VIEW_REPORT, VIEW_AGENT, VIEW_INSPECTOR)


def _get_view(pid: int, runtime: RuntimeInfo | None, mode: str, root: str,
              timeout: float, notes: list[str]) -> HandleView | None:
    if mode == VIEW_NONE:
        return None
    if mode == VIEW_INSPECTOR:
        if runtime is None or runtime.name != "node":
            raise AgentUnavailable("--view inspector needs a Node.js process")
        try:
            return inspector_report(pid, root=root, timeout=timeout)
        except (InspectorError, OSError) as err:
            raise AgentUnavailable(f"no report through the inspector: {err}") from err
    if mode in (VIEW_AUTO, VIEW_AGENT) and (mode == VIEW_AGENT or has_agent_socket(pid, root=root)):
        try:
            return query_agent(pid, root=root, timeout=timeout)
        except AgentUnavailable as err:
            if mode == VIEW_AGENT:
                raise
            notes.append(str(err))
    if mode in (VIEW_AUTO, VIEW_REPORT) and runtime is not None and runtime.name == "node":
        settings = node_settings(pid, root=root)
        if settings.on_signal:
            try:
                return request_report(pid, settings, root=root, timeout=timeout)
            except (TimeoutError, ValueError, OSError) as err:
                if mode == VIEW_REPORT:
                    raise AgentUnavailable(f"no diagnostic report: {err}") from err
                notes.append(f"no diagnostic report: {err}")
        elif mode == VIEW_REPORT:
            raise AgentUnavailable("the process was not started with --report-on-signal")
        else:
            notes.append("no handle view: start node with --report-on-signal, or under "
                         "`fdguard run`, to compare with the handles Node holds")
    elif mode == VIEW_AUTO and runtime is not None and runtime.name == "uvloop":
        notes.append("no handle view: run the app with `python -m fdguard.agent app.py` "
                     "(or `fdguard run`) to compare with what the loop holds")
    return None


def _read_flags(pid: int, snap: Snapshot, want: list[int], root: str) -> dict[int, int]:
    out: dict[int, int] = {}
    if not want:
        return out
    with ProcessDir(pid, root=root, expect=snap.process) as proc:
        for n in want:
            raw = proc.read_fdinfo(n)
            if raw is None:
                continue
            for line in raw.split(b"\n"):
                if line.startswith(b"flags:"):
                    out[n] = int(line.split()[1], 8)
                    break
    return out


def _fd_table(pid: int, root: str) -> frozenset[tuple[int, str]]:
    with ProcessDir(pid, root=root) as proc:
        return frozenset(proc.read_fd_links())


def _demote_newcomers(
    fds: tuple[FdVerdict, ...], summary: Summary, before: frozenset[tuple[int, str]]
) -> tuple[tuple[FdVerdict, ...], Summary]:
    """Unowned fds that did not exist before the view was taken lose their certainty."""
    out = []
    changed = 0
    for v in fds:
        key = (v.fd.fd, f"socket:[{v.fd.inode}]" if v.fd.kind.is_socket else v.fd.target)
        if v.verdict is Verdict.UNOWNED and v.certain and key not in before:
            out.append(dataclasses.replace(
                v, certain=False,
                evidence=v.evidence + "; opened while the handle view was taken: "
                "it may belong to a handle created meanwhile"))
            changed += 1
        else:
            out.append(v)
    if changed and summary.confidence == "high":
        summary = dataclasses.replace(summary, confidence="medium")
    return tuple(out), summary


def _parent_links(pid: int, root: str) -> tuple[int, list[tuple[int, str]]]:
    """The parent's PID and fd links (none for init's children or when unreadable)."""
    try:
        with ProcessDir(pid, root=root) as proc:
            ppid = proc.stat.ppid
        if ppid <= 1:
            return ppid, []
        with ProcessDir(ppid, root=root) as parent:
            return ppid, parent.read_fd_links()
    except FdguardError:
        return 0, []


def _shared_with_parent(
    pid: int, snap: Snapshot, ppid: int, links: list[tuple[int, str]], root: str
) -> frozenset[int]:
    """The path-backed fds of `pid` that share their open file with the parent (kcmp)."""
    if not links or root != DEFAULT_ROOT:
        return frozenset()
    parent_fds: dict[str, list[int]] = {}
    for pfd, target in links:
        parent_fds.setdefault(target.removesuffix(" (deleted)"), []).append(pfd)
    out = set()
    for f in snap.fds:
        if f.kind not in _PATH_KINDS or f.target is None:
            continue
        if any(same_open_file(pid, f.fd, ppid, pfd) for pfd in parent_fds.get(f.target, ())):
            out.add(f.fd)
    return frozenset(out)


def explain(
    pid: int,
    *,
    view: str = VIEW_AUTO,
    root: str = DEFAULT_ROOT,
    timeout: float = 10.0,
) -> Explanation:
    """Explain every fd of `pid`: libuv's own, the application's, or nobody's.

    Args:
        pid: the process.
        view: where the handle view comes from: "auto" (an fdguard agent if one
            answers, else Node's report when the process was started with
            --report-on-signal), "agent", "report", "none" (heuristics only), or
            "inspector": open the Node inspector with SIGUSR1, take a report
            through it and close it again (changes the target for a moment:
            callers must have the user's explicit consent).
        timeout: how long to wait for a report or an agent.

    Side effects: with a Node process started with --report-on-signal (and view
    "auto" or "report"), it sends the report signal; the report file is read and
    removed. Nothing else is changed.

    Raises:
        NoSuchProcess, AccessDenied: reading the process.
        AgentUnavailable: view "agent" or "report" was asked for and cannot be had.
    """
    if view not in VIEW_MODES:
        raise ValueError(f"view must be one of {VIEW_MODES}")
    notes: list[str] = []
    runtime = detect(pid, root=root)
    if runtime is None:
        notes.append("no libuv found in this process (no Node.js, uvloop or libuv.so)")
    # The view and the snapshot are not taken at the same instant: an fd opened
    # while the view was being made is in the snapshot but in no view. Fds absent
    # from a listing taken before the view are therefore never called unowned
    # with certainty.
    before = _fd_table(pid, root) if view != VIEW_NONE else None
    handle_view = _get_view(pid, runtime, view, root, timeout, notes)
    snap = snapshot(pid, root=root)
    # Flags tell libuv's pipes apart and mark inherited fds. Reading them is one
    # fdinfo read per fd: do it for the few non-socket fds, and for the sockets
    # nothing else will claim (not polled, not in the view).
    owned = handle_view.by_fd() if handle_view is not None else {}
    watched = {t for f in snap.fds if f.kind is FdKind.EPOLL and f.info is not None
               for t in (f.info.epoll_targets or ())}
    want = [f.fd for f in snap.fds
            if f.info is None and (not f.kind.is_socket or
                                   (f.fd not in owned and f.fd not in watched))]
    flags = _read_flags(pid, snap, want, root)
    loops = find_loops(snap, flags) if runtime is not None else LoopMap((), ())
    ppid, parent_links = _parent_links(pid, root)
    parents = frozenset(t for _, t in parent_links)
    inherited = _shared_with_parent(pid, snap, ppid, parent_links, root)
    fds, summary = attribute(snap, loops, handle_view, flags=flags, parent_targets=parents,
                             inherited=inherited)
    if handle_view is not None and before is not None:
        fds, summary = _demote_newcomers(fds, summary, before)
    if handle_view is not None:
        notes.extend(handle_view.notes)
        if runtime is not None and handle_view.versions.get("uv") not in (
            None, runtime.libuv_version
        ):
            notes.append(f"the handle view reports libuv {handle_view.versions['uv']}, the "
                         f"binary carries {runtime.libuv_version}")
        if runtime is not None and handle_view.versions:
            extra = {k: v for k, v in handle_view.versions.items() if k != "uv"}
            runtime = dataclasses.replace(runtime, versions={**extra, **runtime.versions})
    published = read_published(pid, root=root)
    if published is not None and published.expected_fds is not None:
        gap = summary.actual - published.expected_fds
        notes.append(f"the application publishes {published.expected_fds} expected fds; "
                     f"actual {summary.actual} ({gap:+d})")
    return Explanation(snap, runtime, loops, handle_view, fds, summary, tuple(notes),
                       published)


__all__ = [
    "VIEW_MODES",
    "Explanation",
    "FdVerdict",
    "Summary",
    "Verdict",
    "attribute",
    "explain",
]
