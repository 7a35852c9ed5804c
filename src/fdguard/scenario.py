"""Read stress scenarios: TOML files (tomllib) and the CLI's one-line fault specs.

A scenario file names the service, the workload, the run policy and the fault
configurations; each `[[fault]]` table is one configuration, judged on its own:

    name = "upstream connect refused"

    [service]
    command = ["node", "server.js", "--leaky"]   # its first printed number is the port
    # port = 8080                                # or a fixed port, with ready_line = false

    [workload]
    mode = "request"           # request | connect | early-close | reset
    connections = 5
    request = "GET\\n"

    [run]
    warmup = 1
    rounds = 3                 # at least; with duration = 600, a 10-minute soak

    [[fault]]
    name = "connect-refused"
    syscall = [{ call = "connect", error = "ECONNREFUSED", when = "1+" }]

    [[fault]]
    name = "client-reset"
    proxy = { reset_after = 4 }

    [[fault]]
    name = "squeeze"
    squeeze = { headroom = 2, flood = 32 }

Unknown keys are errors, not silently ignored: a typo in a CI gate must fail.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from fdguard.errors import UsageError
from fdguard.faults.proxy import ProxyFaults
from fdguard.faults.syscall import FiuFault, SyscallFault
from fdguard.stress import (
    FaultConfig,
    RunPolicy,
    Scenario,
    Service,
    SqueezeSpec,
    Workload,
    WorkloadMode,
)

T = TypeVar("T")


def _check_keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise UsageError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a table")
    return cast(dict[str, Any], value)


def _build(cls: type[T], where: str, table: Mapping[str, Any],
           rename: Mapping[str, str] | None = None) -> T:
    """Build dataclass `cls` from `table`, with keys renamed by `rename`, checking names."""
    rename = rename or {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    allowed = {k for k in names if k not in rename.values()} | set(rename)
    _check_keys(where, table, allowed)
    kwargs = {rename.get(k, k): v for k, v in table.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise UsageError(f"{where}: {err}") from err


def _service(raw: Mapping[str, Any], command: Sequence[str] | None) -> Service:
    _check_keys("[service]", raw, {"command", "port", "host", "ready_line", "ready_timeout",
                                   "env", "cwd"})
    argv = list(command) if command else raw.get("command")
    if not argv or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise UsageError("[service] command: a list of strings (or give the command after --)")
    env = raw.get("env", {})
    if not isinstance(env, dict):
        raise UsageError("[service] env: a table of strings")
    return Service(
        argv=tuple(argv),
        port=raw.get("port"),
        host=raw.get("host", "127.0.0.1"),
        ready_line=raw.get("ready_line", True),
        ready_timeout_s=float(raw.get("ready_timeout", 20.0)),
        env=tuple((str(k), str(v)) for k, v in env.items()),
        cwd=raw.get("cwd"),
    )


def _workload(raw: Mapping[str, Any]) -> Workload:
    _check_keys("[workload]", raw, {"mode", "connections", "request", "timeout", "command"})
    command = raw.get("command")
    request = raw.get("request", "GET\n")
    if not isinstance(request, str):
        raise UsageError("[workload] request: a string")
    return Workload(
        mode=cast(WorkloadMode, raw.get("mode", "request")),
        connections=int(raw.get("connections", 10)),
        request=request.encode(),
        timeout_s=float(raw.get("timeout", 2.0)),
        command=tuple(command) if command else None,
    )


def _policy(raw: Mapping[str, Any]) -> RunPolicy:
    return _build(RunPolicy, "[run]", raw,
                  {"settle_timeout": "settle_timeout_s", "duration": "duration_s"})


def _syscall_fault(where: str, raw: Any) -> SyscallFault:
    t = _table(where, raw)
    return _build(SyscallFault, where, t, {"call": "syscall", "delay": "delay_ms"})


def _fiu_fault(where: str, raw: Any) -> FiuFault:
    t = _table(where, raw)
    return _build(FiuFault, where, t, {"call": "function"})


def fault_config(raw: Mapping[str, Any], index: int = 0) -> FaultConfig:
    """One `[[fault]]` table as a FaultConfig."""
    where = f"[[fault]] #{index + 1}"
    _check_keys(where, raw, {"name", "syscall", "fiu", "proxy", "squeeze", "from_start"})
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{where}: a name is required")
    where = f"[[fault]] {name!r}"
    syscall = tuple(_syscall_fault(f"{where} syscall", f) for f in raw.get("syscall", []))
    fiu = tuple(_fiu_fault(f"{where} fiu", f) for f in raw.get("fiu", []))
    proxy = raw.get("proxy")
    squeeze = raw.get("squeeze")
    return FaultConfig(
        name=name,
        syscall=syscall,
        fiu=fiu,
        proxy=_build(ProxyFaults, f"{where} proxy", _table(where, proxy))
        if proxy is not None else None,
        squeeze=_build(SqueezeSpec, f"{where} squeeze", _table(where, squeeze),
                       {"recover_timeout": "recover_timeout_s"})
        if squeeze is not None else None,
        from_start=bool(raw.get("from_start", False)),
    )


def parse_scenario(data: Mapping[str, Any], *, command: Sequence[str] | None = None,
                   source: str = "scenario") -> Scenario:
    """A Scenario from parsed TOML; `command` (from the CLI) replaces [service] command.

    Raises:
        UsageError: a key is unknown, missing or of the wrong type.
    """
    _check_keys(source, data, {"name", "service", "workload", "run", "fault"})
    faults = data.get("fault", [])
    if not isinstance(faults, list):
        raise UsageError(f"{source}: [[fault]] must be an array of tables")
    configs = tuple(fault_config(_table(f"[[fault]] #{i + 1}", f), i) for i, f in enumerate(faults))
    names = [c.name for c in configs]
    if len(set(names)) != len(names) or "baseline" in names:
        raise UsageError(f"{source}: fault names must be unique and not 'baseline'")
    return Scenario(
        name=str(data.get("name", source)),
        service=_service(_table("[service]", data.get("service", {})), command),
        workload=_workload(_table("[workload]", data.get("workload", {}))),
        faults=configs,
        policy=_policy(_table("[run]", data.get("run", {}))),
    )


def load_scenario(path: str | Path, *, command: Sequence[str] | None = None) -> Scenario:
    """Read a TOML scenario file.

    Raises:
        UsageError: the file is missing, not TOML, or not a valid scenario.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as err:
        raise UsageError(f"cannot read scenario {p}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{p}: not valid TOML: {err}") from err
    return parse_scenario(data, command=command, source=str(p))


def _kv(spec: str, body: str, sep: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, body.split(sep)):
        key, eq, value = item.partition("=")
        if not eq:
            out[key] = True
            continue
        parsed: Any = value
        for conv in (int, float):
            try:
                parsed = conv(value)
                break
            except ValueError:
                continue
        if value in ("true", "false"):
            parsed = value == "true"
        out[key] = parsed
    return out


def parse_fault_spec(spec: str) -> FaultConfig:
    """One fault configuration from a CLI spec, optionally named "NAME=SPEC":

        syscall:connect:error=ECONNREFUSED:when=1+   (strace --inject)
        fiu:connect:error=ECONNREFUSED               (libfiu LD_PRELOAD)
        proxy:reset_after=4,latency_ms=20            (the fault proxy)
        squeeze[:headroom=2,flood=32]                 (fd-limit squeeze)

    Raises:
        UsageError: an unknown kind or key.
    """
    name, eq, body = spec.partition("=")
    if not eq or ":" in name or name in ("squeeze",):
        name, body = spec, spec
    kind, _, rest = body.partition(":")
    if kind == "syscall":
        return FaultConfig(name, syscall=(SyscallFault.parse(rest),))
    if kind == "fiu":
        call, _, opts = rest.partition(":")
        fields = _kv(spec, opts, ":")
        _check_keys(f"fault {spec!r}", fields, {"error", "probability"})
        if "error" not in fields:
            raise UsageError(f"fault {spec!r}: error=ERRNO is required")
        return FaultConfig(name, fiu=(FiuFault(call, str(fields["error"]),
                                               float(fields.get("probability", 1.0))),))
    if kind == "proxy":
        return FaultConfig(name, proxy=_build(ProxyFaults, f"fault {spec!r}", _kv(spec, rest, ",")))
    if kind == "squeeze":
        return FaultConfig(name, squeeze=_build(SqueezeSpec, f"fault {spec!r}",
                                                _kv(spec, rest, ",")))
    raise UsageError(f"fault {spec!r}: kind must be syscall, fiu, proxy or squeeze")
