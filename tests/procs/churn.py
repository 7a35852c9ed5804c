"""A real process that opens and closes fds as fast as it can, for race tests.

Usage: churn.py SECONDS. Prints "churning" once started; stops after SECONDS or
when stdin closes, whichever comes first.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time


def main() -> None:
    deadline = time.monotonic() + float(sys.argv[1])
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("churning", flush=True)
    while not stop.is_set() and time.monotonic() < deadline:
        held = [os.open("/dev/null", os.O_RDONLY) for _ in range(20)]
        r, w = os.pipe()
        s = socket.socket()
        for fd in (*held, r, w):
            os.close(fd)
        s.close()


if __name__ == "__main__":
    main()
