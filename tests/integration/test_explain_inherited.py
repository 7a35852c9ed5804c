"""explain's `inherited` verdict means the same open file as the parent's, not the same path."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from fdguard.attribute import explain
from fdguard.procfs.kcmp import same_open_file

CHILD = """
import os, sys
own = os.open("/dev/null", os.O_RDONLY)
print(own, flush=True)
sys.stdin.read()
"""


def test_same_path_is_not_inherited_but_a_passed_fd_is() -> None:
    mine = os.open("/dev/null", os.O_RDONLY)
    with tempfile.TemporaryFile() as shared:
        _check(mine, shared.fileno())
    os.close(mine)


def _check(mine: int, shared: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        pass_fds=(shared,),
    )
    try:
        assert proc.stdout is not None
        own = int(proc.stdout.readline())
        # the kernel's own answer, for the record
        assert same_open_file(proc.pid, own, os.getpid(), mine) is False
        assert same_open_file(proc.pid, shared, os.getpid(), shared) is True
        verdicts = {v.fd.fd: v for v in explain(proc.pid).fds}
        assert verdicts[shared].verdict.value == "inherited"
        assert verdicts[own].verdict.value != "inherited"
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
