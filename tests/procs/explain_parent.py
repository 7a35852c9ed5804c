"""A parent that hands an open socket down to its child, as supervisors and shells do.

    explain_parent.py CMD...   runs CMD with fd 7 (a listening socket the parent keeps
                               open too, without O_CLOEXEC in the child) and prints one
                               JSON line: {"child": pid, "fd": 7, "child_ready": line}
It waits for the child's first stdout line, then runs until stdin closes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(4)
os.dup2(lst.fileno(), 7)  # dup2 clears O_CLOEXEC on the copy: the child inherits fd 7
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                         pass_fds=(7,))
assert child.stdout is not None
ready = child.stdout.readline().decode().strip()
sys.stdout.write(json.dumps({"child": child.pid, "fd": 7, "child_ready": ready}) + "\n")
sys.stdout.flush()
sys.stdin.read()
child.kill()
child.wait()
