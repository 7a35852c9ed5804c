"""The scenario child: load one libuv, run one scenario N times, stream fd counts as JSON lines.

Run as `python -m fdguard.lab.child --libuv PATH --scenario NAME --iterations N
--workdir DIR [--mark-windows]`. It is a separate process so that an abort or a segfault inside
libuv is a result the parent records (with the signal), not a crash of fdguard.

Lines on stdout, one JSON object each, flushed as they happen so that a crash
mid-run still leaves every count taken before it:
  {"event": "ready", "version": "1.44.2", "count": N}       after setup
  {"event": "iter", "i": 1, "count": N, "outcome": "..."}   after each iteration
  {"event": "fds", "when": "warm"|"end", "fds": [[fd, kind, target], ...]}
  {"event": "done"}
  {"event": "unsupported"|"error", "detail": "..."}        instead of the rest
Counts come from `fdguard.count` and the fd tables from `fdguard.snapshot`,
both on the child's own PID, taken with the fd limit restored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any

from fdguard.errors import LabUnsupported
from fdguard.inspect import count, snapshot
from fdguard.lab.binding import Libuv
from fdguard.lab.scenarios import CATALOGUE, Ctx


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _fds() -> list[list[Any]]:
    # The snapshot's own /proc directory fds are in its listing: leave them out.
    own = f"/proc/{os.getpid()}"
    snap = snapshot(os.getpid(), probe_sockets=False)
    return [[f.fd, str(f.kind), f.target] for f in snap.fds
            if not (f.target or "").startswith(own)]


def run(libuv: str, name: str, iterations: int, workdir: str, mark_windows: bool = False) -> int:
    """Run scenario `name` against `libuv`; the exit status says how it ended."""
    scenario = CATALOGUE[name]
    pid = os.getpid()
    try:
        uv = Libuv(libuv)
        ctx = Ctx(uv, libuv, workdir, inject=mark_windows or scenario.inject is not None)
        if scenario.needs_shared_loop:
            ctx.init_loop()
        if scenario.setup is not None:
            scenario.setup(ctx)
        _emit({"event": "ready", "version": uv.version, "count": count(pid)})
        for i in range(1, iterations + 1):
            outcome = scenario.iterate(ctx)
            _emit({"event": "iter", "i": i, "count": count(pid), "outcome": outcome})
            if i == 1:
                _emit({"event": "fds", "when": "warm", "fds": _fds()})
        _emit({"event": "fds", "when": "end", "fds": _fds()})
        ctx.teardown()
    except LabUnsupported as err:
        _emit({"event": "unsupported", "detail": str(err)})
        return 3
    except Exception as err:
        _emit({"event": "error", "detail": f"{type(err).__name__}: {err}",
               "traceback": traceback.format_exc()[-2000:]})
        return 1
    _emit({"event": "done"})
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="fdguard.lab.child")
    parser.add_argument("--libuv", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--workdir", required=True)
    # Under strace fault injection: mark squeeze windows instead of squeezing.
    parser.add_argument("--mark-windows", action="store_true")
    args = parser.parse_args()
    sys.exit(run(args.libuv, args.scenario, args.iterations, args.workdir, args.mark_windows))


if __name__ == "__main__":
    main()
