"""fdguard.fddiff: identities, grouping lines, moved sockets, refusals."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fdguard.errors import UsageError
from fdguard.fddiff import diff, group_of


def _snap(fds: list[dict[str, Any]], *, pid: int = 7, start: int = 100, t: float = 0.0) -> Any:
    return {"pid": pid, "start_time": start, "taken_at": t, "fds": fds}


def _tcp(fd: int, inode: int, state: str, local: str, remote: str | None) -> dict[str, Any]:
    return {"fd": fd, "kind": "tcp", "inode": inode, "state": state, "local": local,
            "remote": remote, "target": f"socket:[{inode}]"}


@pytest.mark.parametrize(
    ("fd", "line"),
    [
        ({"kind": "file", "target": "/var/log/app/req-1234.log"},
         ("file", "/var/log/app/req-*.log")),
        ({"kind": "file", "target": "/tmp/x.db", "deleted": True}, ("file", "/tmp/x.db (deleted)")),
        (_tcp(3, 1, "CLOSE-WAIT", "10.0.0.7:3000", "10.0.0.5:51234"),
         ("tcp", "CLOSE-WAIT 10.0.0.7:3000 -> 10.0.0.5:*")),
        (_tcp(3, 1, "ESTAB", "10.0.0.7:40000", "10.0.0.5:5432"),
         ("tcp", "ESTAB 10.0.0.7:* -> 10.0.0.5:5432")),
        (_tcp(3, 1, "LISTEN", "0.0.0.0:8080", None), ("tcp", "LISTEN 0.0.0.0:8080")),
        ({"kind": "unix", "state": "ESTAB", "local": None}, ("unix", "ESTAB (unnamed)")),
        ({"kind": "pipe", "target": "pipe:[99]"}, ("pipe", "")),
        ({"kind": "chardev", "target": "/dev/pts/3"}, ("chardev", "/dev/pts/3")),
    ],
)
def test_each_change_is_counted_on_a_line_that_says_what_it_is(
    fd: dict[str, Any], line: tuple[str, str]
) -> None:
    assert group_of(fd) == line


def test_a_reused_fd_number_is_one_closed_and_one_opened() -> None:
    before = _snap([{"fd": 5, "kind": "file", "inode": 1, "target": "/a"}])
    after = _snap([{"fd": 5, "kind": "file", "inode": 2, "target": "/b"}], t=2.0)
    d = diff(before, after)
    assert (len(d.opened), len(d.closed), d.moved) == (1, 1, ())
    assert d.seconds == 2.0
    assert {(g.what, g.net) for g in d.groups} == {("/a", -1), ("/b", 1)}


def test_sockets_that_changed_state_are_moved_not_opened() -> None:
    before = _snap([_tcp(3, 11, "ESTAB", "127.0.0.1:80", "127.0.0.1:40001"),
                    _tcp(4, 12, "ESTAB", "127.0.0.1:80", "127.0.0.1:40002")])
    after = _snap([_tcp(3, 11, "CLOSE-WAIT", "127.0.0.1:80", "127.0.0.1:40001"),
                   _tcp(4, 12, "CLOSE-WAIT", "127.0.0.1:80", "127.0.0.1:40002")])
    d = diff(before, after)
    assert (d.opened, d.closed, d.groups) == ((), (), ())
    assert d.moves() == {("ESTAB", "CLOSE-WAIT"): 2}
    assert d.to_json()["moved"] == [{"from": "ESTAB", "to": "CLOSE-WAIT", "count": 2}]


def test_biggest_net_change_first() -> None:
    files = [{"fd": 10 + i, "kind": "file", "inode": 100 + i, "target": f"/l/{i}.log"}
             for i in range(4)]
    pipes = [{"fd": 3, "kind": "pipe", "inode": 5, "target": "pipe:[5]"}]
    d = diff(_snap(pipes), _snap(files))
    assert [(g.kind, g.net) for g in d.groups] == [("file", 4), ("pipe", -1)]


def test_an_fd_that_is_not_one_is_refused() -> None:
    good = _snap([{"fd": 1, "kind": "file", "inode": 5}])
    for bad in ({"fd": 1, "kind": "file", "inode": [1]}, {"fd": "1"}, 7,
                {"fd": 1, "kind": ["file"]}):
        with pytest.raises(UsageError, match=r"old.json: fds\[0\]"):
            diff(_snap([bad]), good, source="old.json")


def test_snapshots_of_two_processes_or_of_nothing_are_refused() -> None:
    with pytest.raises(UsageError, match=r"is a snapshot of pid 7 .* not of pid 8"):
        diff(_snap([]), _snap([], pid=8), source="old.json")
    with pytest.raises(UsageError, match="start time 100"):
        diff(_snap([]), _snap([], start=101))
    with pytest.raises(UsageError, match="not an fdguard snapshot"):
        diff({"fds": "no"}, _snap([]))
    with pytest.raises(UsageError, match="no numeric 'taken_at'"):
        diff({"pid": 7, "start_time": 100, "fds": []}, _snap([]))


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=4),
    max_leaves=16,
)
_FD = st.fixed_dictionaries(
    {"fd": st.integers(0, 5) | _JSON, "kind": st.sampled_from(["file", "tcp", "pipe"]) | _JSON},
    optional={"inode": st.integers(0, 3) | _JSON, "target": _JSON, "state": _JSON,
              "local": _JSON, "remote": _JSON, "deleted": _JSON},
)


_GOOD_FD = st.fixed_dictionaries(
    {"fd": st.integers(0, 5), "kind": st.sampled_from(["file", "tcp", "pipe"])},
    optional={"inode": st.integers(0, 3), "target": st.text(max_size=6),
              "state": st.sampled_from(["ESTAB", "CLOSE-WAIT"]),
              "local": st.sampled_from(["127.0.0.1:80", "127.0.0.1:40000"])},
)


def _corrupt(fds: list[dict[str, Any]], key: str, value: Any) -> Any:
    """A snapshot of `fds` whose first fd has `key` set to `value` (anything)."""
    return _snap([{**fds[0], key: value}, *fds[1:]] if fds else [value])


@settings(max_examples=300, deadline=None, database=None)
@given(before=_JSON | st.builds(_snap, st.lists(_FD, max_size=4)) | st.builds(
           _corrupt, st.lists(_GOOD_FD, max_size=3),
           st.sampled_from(["fd", "kind", "inode", "target", "state", "local", "remote",
                            "deleted"]), _JSON),
       fds=st.lists(_GOOD_FD, max_size=4))
def test_any_json_before_is_a_diff_or_a_usage_error(before: Any, fds: list[Any]) -> None:
    try:
        d = diff(before, _snap(fds))
    except UsageError as err:
        message = str(err)
        assert "\n" not in message
        return
    assert len(d.opened) + len(d.moved) <= d.after_count
    assert sum(g.opened for g in d.groups) == len(d.opened)
    assert sum(g.closed for g in d.groups) == len(d.closed)
