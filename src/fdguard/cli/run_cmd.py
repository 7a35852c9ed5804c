"""`fdguard run -- CMD...`: start a service with fdguard's agent inside, for `explain`."""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources

import click

from fdguard.errors import ToolMissing, UsageError


def _node_agent() -> str:
    return str(resources.files("fdguard.agent").joinpath("node_agent.js"))


def agent_argv_env(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start `argv` with the agent preloaded.

    Node: NODE_OPTIONS gains `--require <agent>` (so `npm start` and other wrappers
    are covered, and Node children get their own agent). Python: `python app.py`
    becomes `python -m fdguard.agent app.py`, with fdguard on PYTHONPATH.
    """
    env = dict(env)
    prog = os.path.basename(argv[0])
    if prog.startswith(("python", "pypy")):
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (pkg_root, env.get("PYTHONPATH", "")) if p
        )
        return [argv[0], "-m", "fdguard.agent", *argv[1:]], env
    require = f"--require={_node_agent()}"
    env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} {require}".strip()
    return argv, env


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_cmd(command: tuple[str, ...]) -> None:
    """Run COMMAND (node or python) with fdguard's agent preloaded; it keeps its PID.

    The agent answers `fdguard explain PID` on an owner-only unix socket
    ($FDGUARD_AGENT_DIR/PID.sock, default /tmp/fdguard-UID/PID.sock) and
    changes nothing else. Example: fdguard run -- node server.js
    """
    argv = list(command)
    if not argv:
        raise UsageError("give the command to run after --")
    exe = shutil.which(argv[0])
    if exe is None:
        raise ToolMissing(argv[0])
    new_argv, env = agent_argv_env(argv, dict(os.environ))
    sys.stdout.flush()
    sys.stderr.flush()
    # exec: the service keeps fdguard's PID, so `fdguard run` can sit in a unit
    # file or a supervisor exactly where the service's own command was.
    os.execvpe(exe, new_argv, env)
