"""Squeeze the fd limit and create uvloop loops repeatedly (the uv_loop_init path).

uvloop vendors its own libuv; with one whose fix for the failed-init epoll leak
is in (1.51.0+), failed inits leave no fd behind. Protocol as in
known_loop_init_squeeze.c: "ready <libuv version>", a line on stdin, the squeeze,
"done fails=F ok=K", then wait for stdin to close.
"""

from __future__ import annotations

import os
import resource
import sys

import uvloop
import uvloop.loop


def limit_leaving(want: int) -> int:
    """The smallest limit below which exactly `want` fd numbers are free."""
    used = {int(n) for n in os.listdir("/proc/self/fd")}
    lim = free = 0
    while free < want:
        if lim not in used:
            free += 1
        lim += 1
    return lim


def main() -> int:
    tries = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    uvloop.new_event_loop().close()  # warm-up: libuv's process-global signal pipe
    v = uvloop.loop.libuv_get_version()
    print(f"ready {v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}", flush=True)
    sys.stdin.readline()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fails = ok = 0
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit_leaving(3), hard))
    try:
        for _ in range(tries):
            try:
                loop = uvloop.new_event_loop()
            except OSError:
                fails += 1
            else:
                ok += 1
                loop.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print(f"done fails={fails} ok={ok}", flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
