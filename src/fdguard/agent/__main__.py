"""`python -m fdguard.agent [-m module | script.py] args...`: run an app with the agent started."""

from __future__ import annotations

import os
import runpy
import sys

from fdguard.agent import start

_USAGE = "usage: python -m fdguard.agent (script.py | -m module) [args...]"


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write(_USAGE + "\n")
        raise SystemExit(2 if not argv else 0)
    start()
    if argv[0] == "-m":
        if len(argv) < 2:
            sys.stderr.write(_USAGE + "\n")
            raise SystemExit(2)
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
