"""The optional C fd-link reader agrees with the pure-Python one on real processes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

import fdguard
from fdguard.errors import NoSuchProcess
from fdguard.procfs import process
from fdguard.procfs.process import ProcessDir
from tests.conftest import Child, python_proc


def test_extension_is_built() -> None:
    # setup.py marks it optional; on the machines this project supports it must build.
    assert process._speedups is not None


def test_c_and_python_readers_agree(spawn: Callable[..., Child],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    child = spawn(python_proc("fdzoo.py"))
    assert json.loads(child.ready)["truth"]
    with ProcessDir(child.pid) as proc:
        fast = list(proc.iter_fd_links())
    monkeypatch.setattr(process, "_speedups", None)
    with ProcessDir(child.pid) as proc:
        slow = list(proc.iter_fd_links())
        assert slow == proc.read_fd_links()
    assert fast == slow
    assert len(fast) > 20
    fallback = fdguard.snapshot(child.pid)
    monkeypatch.undo()
    assert fdguard.snapshot(child.pid).fds == fallback.fds


def test_c_reader_on_a_dead_process_is_no_such_process(spawn: Callable[..., Child]) -> None:
    child = spawn(python_proc("fdzoo.py"))
    with ProcessDir(child.pid) as proc:
        _ = proc.fd_dir
        child.proc.kill()
        child.proc.wait()
        with pytest.raises(NoSuchProcess):
            list(proc.iter_fd_links())


def test_c_reader_skips_fds_closing_mid_read(spawn: Callable[..., Child]) -> None:
    churn = spawn(python_proc("churn.py", "20"))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(300):
        with ProcessDir(churn.pid) as proc:
            links = list(proc.iter_fd_links())
        assert all(isinstance(fd, int) and target for fd, target in links)
    assert len(os.listdir("/proc/self/fd")) == before


def test_c_and_python_dump_parsers_agree(spawn: Callable[..., Child],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from fdguard.procfs import sockdiag

    child = spawn(python_proc("fdzoo.py"))
    assert json.loads(child.ready)["truth"]
    for family in (socket.AF_INET, socket.AF_INET6):
        for proto in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
            data = sockdiag.dump(sockdiag.inet_request(family, proto))
            fast = sockdiag.parse_inet_dump(data, proto)
            monkeypatch.setattr(sockdiag, "_speedups", None)
            slow = sockdiag.parse_inet_dump(data, proto)
            monkeypatch.undo()
            assert fast == slow
            assert fast
            some = set(list(fast)[:3])
            assert sockdiag.parse_inet_dump(data, proto, some) == {i: slow[i] for i in some}
