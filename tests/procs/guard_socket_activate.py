"""Socket activation the way systemd does it, for tests: bind, put the socket at fd 3,
set LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES for our own pid, and exec the command.

    python3 guard_socket_activate.py HOST:PORT NAME -- CMD ARGS
"""

from __future__ import annotations

import os
import socket
import sys

addr, name, sep, *cmd = sys.argv[1:]
if sep != "--" or not cmd:
    sys.exit(__doc__)
host, port = addr.rsplit(":", 1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port)))
s.listen(128)
if s.fileno() == 3:
    os.set_inheritable(s.detach(), True)
else:
    os.dup2(s.fileno(), 3, inheritable=True)
    s.close()
env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": name}
os.execvpe(cmd[0], cmd, env)
