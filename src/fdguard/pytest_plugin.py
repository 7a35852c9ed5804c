"""pytest plugin: fail a test that leaks file descriptors, naming each leaked fd.

Turn it on for a whole run with `pytest --fdguard`, or per test with the
`@pytest.mark.fdguard_no_leak` marker or the `fdguard_no_leak` fixture.

What is checked, and how it is reported:
- a leak is an fd of the test process open after teardown that was not open
  before setup, and that no wider-scoped (module, session...) fixture opened:
  those outlive one test on purpose. Measuring across the whole test, not just
  its body, means an event loop a function fixture opens and closes is never
  blamed (nor libuv's lazily opened /dev/null reserve fd, closed with the
  loop), while a fixture that forgets to close is. The test FAILS, each fd
  listed with kind, TCP state, ends and target.
- repeats (`--fdguard-repeats=N` or `fdguard_no_leak(repeats=N)`): the body
  runs N more times, as CPython's `regrtest -R` does. Growth on every later run
  fails the test at once ("grows every run"); growth on the first run only is a
  one-time cache, reported in the terminal summary, not a failure. The body
  must be safe to run again.
- fds 0-2 (swapped by pytest's capture) and the snapshot's own /proc fds are
  not judged. `asyncio.run()` / `uvloop.run()` inside a test net out; the
  pipe pair the first uvloop loop of a process keeps is a one-time cache.

fds are compared as (number, inode, target), so a test that closes fd 7 and
opens another object at fd 7 is seen. `gc.collect()` runs before each
measurement, so objects that are garbage but not yet collected do not count.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Generator, Iterable
from typing import Any

import pytest

# runtestprotocol is pytest's own per-item protocol (what plugins that hold reports
# back, such as pytest-rerunfailures, call); pytest has no public alias for it.
from _pytest.runner import runtestprotocol

from fdguard.inspect import snapshot
from fdguard.model import Fd
from fdguard.stress import judge

_Key = tuple[int, int | None, str | None]

_BEFORE_SETUP = pytest.StashKey[dict[_Key, Fd]]()
_REPORTED = pytest.StashKey[set[_Key]]()
_WIDE_FIXTURE_FDS = pytest.StashKey[set[_Key]]()
_CACHES = pytest.StashKey[list[str]]()
_FIRST_RUN = pytest.StashKey[tuple[set[_Key], list[int]]]()
_PROTOCOL = pytest.StashKey[bool]()
_LEAK = pytest.StashKey[str]()

MARKER = "fdguard_no_leak"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fdguard", "file-descriptor leak checks (fdguard)")
    group.addoption("--fdguard", action="store_true", default=False,
                    help="Fail every test that leaks file descriptors.")
    group.addoption("--fdguard-repeats", type=int, default=0, metavar="N",
                    help="Run each checked test body N more times to tell a leak (grows "
                         "every run) from a one-time cache (grows once).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(repeats=0): fail this test if it leaks file descriptors; with repeats, "
        "run the body that many more times to tell a leak from a one-time cache.",
    )
    config.stash[_WIDE_FIXTURE_FDS] = set()
    config.stash[_CACHES] = []


@pytest.fixture
def fdguard_no_leak() -> None:
    """Request this fixture to fail the test if it leaks file descriptors."""


def _key(f: Fd) -> _Key:
    return (f.fd, f.inode, f.target)


def _table() -> dict[_Key, Fd]:
    gc.collect()
    snap = snapshot(os.getpid())
    # fds 0-2 are swapped by pytest's output capture between phases, and /proc
    # directories are the snapshot's own reading fds: not the test's to answer for.
    return {
        _key(f): f
        for f in snap.fds
        if f.fd > 2 and not (f.target or "").startswith("/proc/")
    }


def _checked(item: pytest.Item) -> bool:
    if item.config.getoption("--fdguard", default=False):
        return True
    if item.get_closest_marker(MARKER) is not None:
        return True
    return MARKER in getattr(item, "fixturenames", ())


def _repeats(item: pytest.Item) -> int:
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        value = marker.kwargs.get("repeats", marker.args[0] if marker.args else None)
        if value is not None:
            return int(value)
    return int(item.config.getoption("--fdguard-repeats", default=0) or 0)


def describe(f: Fd) -> str:
    """One leaked fd as a line: number, kind, state, ends, target."""
    parts = [f"fd {f.fd}: {f.kind.value}"]
    if f.state is not None:
        parts.append(f.state.value)
    if f.local:
        parts.append(f.local + (f" -> {f.remote}" if f.remote else ""))
    parts.append(f.target or "?")
    if f.deleted:
        parts.append("(deleted)")
    return " ".join(parts)


def _listing(fds: Iterable[Fd], limit: int = 20) -> str:
    fds = sorted(fds, key=lambda f: f.fd)
    lines = [f"  {describe(f)}" for f in fds[:limit]]
    if len(fds) > limit:
        lines.append(f"  ... and {len(fds) - limit} more")
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """Remember fds opened by wider-scoped fixtures: they outlive one test on purpose."""
    if fixturedef.scope == "function" or not _checked(request.node):
        return (yield)
    before = set(_table())
    result = yield
    request.config.stash[_WIDE_FIXTURE_FDS].update(set(_table()) - before)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    if _checked(item):
        item.stash[_BEFORE_SETUP] = _table()
        item.stash[_REPORTED] = set()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """With repeats: run the body again and fail at once if it grows every run."""
    repeats = _repeats(item) if _checked(item) else 0
    if not repeats:
        return (yield)
    before = _table()
    result = yield  # a failing test raises here: its own failure comes first
    after = _table()
    counts = [len(before), len(after)]
    first_run = set(after) - set(before)
    for _ in range(repeats):
        item.runtest()
        after = _table()
        counts.append(len(after))
    deltas = [b - a for a, b in itertools.pairwise(counts)]
    new = {k: f for k, f in after.items() if k not in before}
    if judge(deltas[1:], max_zero_rounds=0, min_growth=1).leak:
        grown = {k: f for k, f in new.items() if k not in first_run}
        item.stash[_REPORTED].update(new)
        pytest.fail(
            f"fdguard: leaks {len(grown)} fd(s) over {repeats} repeats "
            f"(deltas per run {deltas}): grows every run, not a one-time cache\n"
            + _listing(grown.values()),
            pytrace=False,
        )
    if not any(deltas[1:]):
        item.stash[_FIRST_RUN] = (first_run, deltas)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[
    None, None, None
]:
    """After teardown: what the test and its fixtures opened and left open is a leak."""
    result = yield
    before = item.stash.get(_BEFORE_SETUP, None)
    if before is None:
        return result
    del item.stash[_BEFORE_SETUP]
    wide: set[_Key] = item.config.stash[_WIDE_FIXTURE_FDS]
    reported: set[_Key] = item.stash.get(_REPORTED, set())
    after = _table()
    new = {k: f for k, f in after.items() if k not in before and k not in wide | reported}
    first_run, deltas = item.stash.get(_FIRST_RUN, (set(), []))
    cached = [f for k, f in new.items() if k in first_run]
    leaked = [f for k, f in new.items() if k not in first_run]
    if cached:
        item.config.stash[_CACHES].append(
            f"{item.nodeid}: {len(cached)} fd(s) opened on the first run only "
            f"(a one-time cache, deltas {deltas}):\n" + _listing(cached)
        )
    if leaked:
        hint = "" if _repeats(item) else " (repeats tell a leak from a one-time cache)"
        message = (f"fdguard: test leaked {len(leaked)} fd(s), still open after teardown{hint}:\n"
                   + _listing(leaked))
        if _PROTOCOL in item.stash:
            # Our protocol holds the reports back: it turns the passed call into a failure.
            item.stash[_LEAK] = message
        else:
            pytest.fail(message, pytrace=False)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run a checked test's phases, then report: a leak found after teardown fails the test.

    Leaks are only known once teardown has closed what fixtures hold, after the
    call's report would normally have been logged. So for checked tests the
    reports are held back until then, and a leak turns the passed call report
    into a failure (what pytest-rerunfailures does to report reruns). A test
    that failed already keeps its own failure.
    """
    if not _checked(item):
        return None
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    item.stash[_PROTOCOL] = True
    try:
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
    finally:
        del item.stash[_PROTOCOL]
    message = item.stash.get(_LEAK, None)
    if message is not None:
        del item.stash[_LEAK]
        calls = [r for r in reports if r.when == "call" and r.passed]
        if calls:
            calls[0].outcome = "failed"
            calls[0].longrepr = message
        else:
            # No passed call to blame (setup failed, or the body failed): the
            # teardown report carries the leak.
            for r in reports:
                if r.when == "teardown" and r.passed:
                    r.outcome = "failed"
                    r.longrepr = message
    for r in reports:
        ihook.pytest_runtest_logreport(report=r)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    caches = config.stash.get(_CACHES, [])
    if caches:
        terminalreporter.section("fdguard: one-time caches (not leaks)")
        for line in caches:
            terminalreporter.write_line(line)
