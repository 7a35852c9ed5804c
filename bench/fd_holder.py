"""A real process holding a mix of fds for benchmarks: loopback TCP pairs, pipes, files.

Usage: fd_holder.py TOTAL [TCP_SHARE PIPE_SHARE [DISTINCT_FILES]]  (the rest are
files, spread over DISTINCT_FILES paths, 100 by default).
Raises its soft RLIMIT_NOFILE to the hard limit, opens the fds, prints "ready N",
then waits until stdin closes.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import tempfile


def main() -> None:
    total = int(sys.argv[1])
    tcp_share = float(sys.argv[2]) if len(sys.argv) > 2 else 0.4
    pipe_share = float(sys.argv[3]) if len(sys.argv) > 3 else 0.3
    distinct = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    keep: list[object] = []
    n_tcp = int(total * tcp_share) // 2
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    keep.append(lst)
    for _ in range(n_tcp):
        c = socket.create_connection(lst.getsockname())
        s, _ = lst.accept()
        keep += [c, s]
    for _ in range(int(total * pipe_share) // 2):
        keep += list(os.pipe())
    tmp = tempfile.mkdtemp(prefix="fdholder-")
    paths = []
    for i in range(distinct):
        p = os.path.join(tmp, f"f{i}")
        with open(p, "w") as f:
            f.write("x")
        paths.append(p)
    n_files = total - n_tcp * 2 - 1 - (int(total * pipe_share) // 2) * 2
    for i in range(max(0, n_files)):
        keep.append(os.open(paths[i % distinct], os.O_RDONLY))
    print(f"ready {len(os.listdir('/proc/self/fd'))}", flush=True)
    sys.stdin.read()
    for p in paths:
        os.unlink(p)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
