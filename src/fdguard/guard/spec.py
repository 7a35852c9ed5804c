"""What a guard runs: programs, their listening sockets, readiness, triggers and limits.

Frozen values only; `load_config` reads the TOML file of several named programs
(like supervisord's `[program:x]` sections) and the CLI builds the one-program
case from its options. Validation happens here, once, so the supervisor never
meets an impossible setting at 3 a.m.
"""

from __future__ import annotations

import enum
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fdguard.errors import UsageError


class Readiness(enum.StrEnum):
    """How the supervisor learns that a new worker can take traffic.

    - NOTIFY: the worker sends `READY=1` to $NOTIFY_SOCKET, as with systemd's
      sd_notify (Type=notify). Exact, but the program must do it.
    - ACCEPTING: a health check that needs no cooperation: the worker's event
      loop watches one of the inherited listening sockets (an epoll interest
      list entry on its inode, read from /proc/PID/fdinfo). A libuv server
      (Node's `server.listen({fd: 3})`, uvloop's `create_server(sock=...)`)
      registers the socket with epoll exactly when it starts accepting.
    - NONE: ready as soon as it is running (for programs without sockets).

    An HTTP probe through the listening address cannot tell workers apart: old
    and new share the socket, so the old one may answer for the new. Both modes
    above look at the new worker itself (or its descendant, for wrappers).
    """

    NOTIFY = "notify"
    ACCEPTING = "accepting"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """One listening socket the guard owns: `tcp` host:port or a `unix` path, with a name."""

    name: str
    family: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.family == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_TCP = re.compile(r"^(?:tcp:)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d+)$")


def parse_listen(text: str, default_name: str = "http") -> ListenSpec:
    """Parse `[NAME=]ADDR` with ADDR `host:port`, `[v6]:port`, `:port` or `unix:/path`.

    Raises:
        UsageError: not one of these shapes.
    """
    name, sep, addr = text.partition("=")
    if not sep:
        name, addr = default_name, text
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise UsageError(f"bad socket name {name!r} (letters, digits, _ . - only)")
    if addr.startswith("unix:"):
        path = addr[5:]
        if not path:
            raise UsageError(f"empty unix socket path in {text!r}")
        return ListenSpec(name=name, family="unix", path=path)
    m = _TCP.match(addr)
    if not m:
        raise UsageError(f"cannot parse listen address {text!r}: use host:port or unix:/path")
    host = m.group("v6") or m.group("host") or "127.0.0.1"
    port = int(m.group("port"))
    if port > 65535:
        raise UsageError(f"port out of range in {text!r}")
    return ListenSpec(name=name, family="tcp", host=host, port=port)


@dataclass(frozen=True, slots=True)
class Triggers:
    """When a worker is replaced. None disables a trigger.

    - max_fd_share: open fds / soft RLIMIT_NOFILE at or above this share.
    - eta_below: the leak detector's ETA to the limit below this many seconds.
    - max_lifetime (+ up to lifetime_jitter, uniformly, per worker so that
      workers do not all restart at once -- gunicorn's max_requests_jitter).
    """

    max_fd_share: float | None = None
    eta_below: float | None = None
    max_lifetime: float | None = None
    lifetime_jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.max_fd_share is not None and not 0 < self.max_fd_share <= 1:
            raise UsageError(f"max_fd_share must be in (0, 1], not {self.max_fd_share}")
        if self.eta_below is not None and self.eta_below <= 0:
            raise UsageError("eta_below must be positive")
        if self.max_lifetime is not None and self.max_lifetime <= 0:
            raise UsageError("max_lifetime must be positive")
        if self.lifetime_jitter < 0:
            raise UsageError("lifetime_jitter must not be negative")


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    """One named program: its command, worker count, sockets, readiness, triggers, limits."""

    name: str
    argv: tuple[str, ...]
    workers: int = 1
    listen: tuple[ListenSpec, ...] = ()
    readiness: Readiness = Readiness.ACCEPTING
    ready_timeout: float = 30.0
    grace: float = 30.0
    triggers: Triggers = field(default_factory=Triggers)
    nofile: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    # Start failures in a row (exit or timeout before ready) before giving up,
    # and the exponential backoff between tries: backoff * 2**(n-1), capped.
    max_start_failures: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.name):
            raise UsageError(f"bad program name {self.name!r} (letters, digits, _ . - only)")
        if not self.argv:
            raise UsageError(f"program {self.name}: no command given")
        if self.workers < 1:
            raise UsageError(f"program {self.name}: workers must be at least 1")
        if self.readiness is Readiness.ACCEPTING and not self.listen:
            raise UsageError(
                f"program {self.name}: readiness 'accepting' needs a listening socket "
                "(--listen), or use --ready notify|none"
            )
        if self.nofile is not None and self.nofile < 16:
            raise UsageError(f"program {self.name}: nofile {self.nofile} is too small to run")
        if self.ready_timeout <= 0 or self.grace < 0:
            raise UsageError(f"program {self.name}: timeouts must be positive")
        if self.max_start_failures < 1:
            raise UsageError(f"program {self.name}: max_start_failures must be at least 1")
        names = [ls.name for ls in self.listen]
        if len(set(names)) != len(names):
            raise UsageError(f"program {self.name}: socket names must be unique: {names}")


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Everything one guard process runs."""

    name: str
    programs: tuple[ProgramSpec, ...]
    interval: float = 1.0

    def __post_init__(self) -> None:
        if not self.programs:
            raise UsageError("a guard needs at least one program")
        names = [p.name for p in self.programs]
        if len(set(names)) != len(names):
            raise UsageError(f"program names must be unique: {names}")
        if self.interval <= 0:
            raise UsageError("interval must be positive")
        seen: dict[str, str] = {}
        for p in self.programs:
            for ls in p.listen:
                if ls.family == "tcp" and ls.port == 0:
                    continue  # any free port: never the same twice
                addr = str(ls)
                if addr in seen:
                    raise UsageError(
                        f"{addr} is used by both {seen[addr]} and {p.name}: one owner per socket"
                    )
                seen[addr] = p.name


_PROGRAM_KEYS = {
    "command", "workers", "listen", "ready", "ready_timeout", "grace", "max_fd_share",
    "eta_below", "max_lifetime", "lifetime_jitter", "nofile", "env", "cwd",
    "max_start_failures", "backoff", "backoff_max",
}  # fmt: skip


def _num(prog: str, table: Mapping[str, Any], key: str, default: float | None) -> float | None:
    v = table.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise UsageError(f"program {prog}: {key} must be a number, not {v!r}")
    return float(v)


def program_from_table(name: str, table: Mapping[str, Any]) -> ProgramSpec:
    """Build one ProgramSpec from a `[programs.NAME]` TOML table.

    Raises:
        UsageError: unknown keys or values of the wrong type.
    """
    unknown = set(table) - _PROGRAM_KEYS
    if unknown:
        raise UsageError(f"program {name}: unknown keys {sorted(unknown)}")
    cmd = table.get("command")
    if isinstance(cmd, str):
        argv = tuple(shlex.split(cmd))
    elif isinstance(cmd, list) and all(isinstance(a, str) for a in cmd):
        argv = tuple(cmd)
    else:
        raise UsageError(f"program {name}: command must be a string or a list of strings")
    listen_raw = table.get("listen", [])
    if isinstance(listen_raw, str):
        listen_raw = [listen_raw]
    listen = tuple(
        parse_listen(str(x), default_name="http" if i == 0 else f"s{i}")
        for i, x in enumerate(listen_raw)
    )
    env = table.get("env", {})
    if not isinstance(env, dict):
        raise UsageError(f"program {name}: env must be a table")
    nofile = table.get("nofile")

    def req(key: str, default: float) -> float:
        v = _num(name, table, key, default)
        return default if v is None else v

    try:
        readiness = Readiness(table.get("ready", "accepting" if listen else "none"))
    except ValueError as err:
        raise UsageError(f"program {name}: ready must be notify, accepting or none") from err
    return ProgramSpec(
        name=name,
        argv=argv,
        workers=int(table.get("workers", 1)),
        listen=listen,
        readiness=readiness,
        ready_timeout=req("ready_timeout", 30.0),
        grace=req("grace", 30.0),
        triggers=Triggers(
            max_fd_share=_num(name, table, "max_fd_share", None),
            eta_below=_num(name, table, "eta_below", None),
            max_lifetime=_num(name, table, "max_lifetime", None),
            lifetime_jitter=req("lifetime_jitter", 0.0),
        ),
        nofile=int(nofile) if nofile is not None else None,
        env=tuple((str(k), str(v)) for k, v in env.items()),
        cwd=table.get("cwd"),
        max_start_failures=int(table.get("max_start_failures", 5)),
        backoff=req("backoff", 0.5),
        backoff_max=req("backoff_max", 30.0),
    )


def parse_config(doc: Mapping[str, Any], default_name: str = "guard") -> GuardConfig:
    """Build a GuardConfig from a parsed TOML document.

    The shape::

        [guard]
        name = "shop"          # optional
        interval = 1.0         # seconds between trigger checks

        [programs.api]
        command = "node server.js"
        workers = 2
        listen = ["127.0.0.1:8080"]
        max_fd_share = 0.8
        nofile = 4096

        [programs.images]
        command = ["python3", "thumbs.py"]
        ready = "notify"
        max_lifetime = 3600
        lifetime_jitter = 300

    Raises:
        UsageError: a missing or malformed section.
    """
    guard = doc.get("guard", {})
    progs = doc.get("programs")
    if not isinstance(progs, dict) or not progs:
        raise UsageError("the config needs at least one [programs.NAME] table")
    programs = []
    for name, table in progs.items():
        if not isinstance(table, dict):
            raise UsageError(f"[programs.{name}] must be a table")
        programs.append(program_from_table(name, table))
    interval = guard.get("interval", 1.0)
    return GuardConfig(
        name=str(guard.get("name", default_name)),
        programs=tuple(programs),
        interval=float(interval),
    )


def load_config(path: str | Path) -> GuardConfig:
    """Read a guard TOML file (see `parse_config` for its shape).

    Raises:
        UsageError: unreadable file, bad TOML, or bad settings.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except OSError as err:
        raise UsageError(f"cannot read {p}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{p}: {err}") from err
    return parse_config(doc, default_name=p.stem)
