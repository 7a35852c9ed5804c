"""The fdguard pytest plugin, run for real by pytester on generated test files.

Each inner run is a separate pytest process (runpytest_subprocess) that loads
the plugin through its `pytest11` entry point, exactly as users get it. Runs
are few and grouped (each costs a pytest start-up); other plugins are off.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

LEAKS = """
import socket
import pytest

KEEP = []

def test_leaks_a_file(tmp_path):
    KEEP.append(open(tmp_path / "held.txt", "w"))

def test_leaks_a_tcp_connection():
    srv = socket.create_server(("127.0.0.1", 0))
    KEEP.append(socket.create_connection(srv.getsockname()))
    KEEP.append(srv.accept()[0])
    srv.close()

def test_healthy(tmp_path):
    with open(tmp_path / "ok.txt", "w") as fh:
        fh.write("x")
    a, b = socket.socketpair()
    a.close(); b.close()
"""

MARKED = """
import os
import pytest
KEEP = []
CACHE = {}

def test_unchecked_leak(tmp_path):
    KEEP.append(open(tmp_path / "a", "w"))

@pytest.mark.fdguard_no_leak
def test_marked_leak(tmp_path):
    KEEP.append(open(tmp_path / "b", "w"))

def test_fixture_leak(tmp_path, fdguard_no_leak):
    KEEP.append(open(tmp_path / "c", "w"))

@pytest.mark.fdguard_no_leak(repeats=3)
def test_cache_opens_once():
    if "null" not in CACHE:
        CACHE["null"] = open(os.devnull)

@pytest.mark.fdguard_no_leak(repeats=3)
def test_leak_opens_every_time():
    KEEP.append(open(os.devnull))

def test_without_repeats_a_cache_looks_like_a_leak(fdguard_no_leak):
    CACHE.setdefault("other", open(os.devnull))
"""

FIXTURES = """
import os
import socket
import pytest

KEEP = []

@pytest.fixture(scope="module")
def shared_server():
    srv = socket.create_server(("127.0.0.1", 0))
    yield srv
    srv.close()

@pytest.fixture
def sloppy():
    KEEP.append(open(os.devnull))
    yield

def test_uses_shared(shared_server):
    assert shared_server.fileno() >= 0

def test_uses_shared_again(shared_server):
    assert shared_server.fileno() >= 0

def test_uses_sloppy(sloppy):
    pass
"""

QUIET = ("-p", "no:hypothesispytest", "-p", "no:benchmark", "-p", "no:cacheprovider")


def _errors(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("ERROR ")]


def _failed(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("FAILED ")]


def test_flag_reports_leaks_naming_each_fd_and_spares_wider_fixtures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_leaks=LEAKS, test_fix=FIXTURES)
    result = pytester.runpytest_subprocess("--fdguard", *QUIET)
    # Each leak is known once teardown is over, and fails its test.
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines([
        "*_ test_leaks_a_file _*",
        "*fdguard: test leaked 1 fd(s), still open after teardown*",
        "*fd *: file */held.txt*",
    ])
    # Both ends of the connection, with TCP state and endpoints.
    result.stdout.fnmatch_lines([
        "*_ test_leaks_a_tcp_connection _*",
        "*fdguard: test leaked 2 fd(s)*",
        "*fd *: tcp ESTAB 127.0.0.1:* -> 127.0.0.1:* socket:[[]*[]]*",
    ])
    # A function fixture's leak is the test's; a module fixture's server is not.
    result.stdout.fnmatch_lines([
        "*_ test_uses_sloppy _*",
        "*test leaked 1 fd(s), still open after teardown*",
        "*fd *: chardev /dev/null*",
    ])
    assert _errors(result) == []
    failed = "\n".join(_failed(result))
    assert "test_healthy" not in failed
    assert "test_uses_shared" not in failed


def test_idle_without_flag_marker_and_fixture_select_tests_repeats_find_caches(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_leaks=LEAKS, test_some=MARKED)
    result = pytester.runpytest_subprocess("--strict-markers", *QUIET)
    # test_leaks.py is unchecked: all 3 pass. In test_some.py: two selected leaks,
    # one leak that grows every repeat, one cache mistaken for a leak without
    # repeats fail; the unchecked leak and the cache checked with repeats pass.
    result.assert_outcomes(passed=5, failed=4)
    assert _errors(result) == []
    assert [line.split("::")[1].split(" ")[0] for line in _failed(result)] == [
        "test_marked_leak", "test_fixture_leak", "test_leak_opens_every_time",
        "test_without_repeats_a_cache_looks_like_a_leak",
    ]
    result.stdout.fnmatch_lines([
        "*fdguard: leaks 3 fd(s) over 3 repeats (deltas per run [[]1, 1, 1, 1[]]): grows every "
        "run, not a one-time cache*",
    ])
    result.stdout.fnmatch_lines([
        "*_ test_without_repeats_a_cache_looks_like_a_leak _*",
        "*repeats tell a leak from a one-time cache*",
    ])
    result.stdout.fnmatch_lines([
        "*fdguard: one-time caches (not leaks)*",
        "*test_cache_opens_once: 1 fd(s) opened on the first run only*",
        "*fd *: chardev /dev/null*",
    ])


ASYNC_TESTS = """
import asyncio
import inspect
import pytest
import uvloop

KEEP = []

async def echo(reader, writer):
    writer.write(await reader.readline())
    await writer.drain()
    writer.close()
    await writer.wait_closed()

async def roundtrip(keep_client):
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hi\\n")
    assert await reader.readline() == b"hi\\n"
    if keep_client:
        KEEP.append(writer.transport.get_extra_info("socket").dup())
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()

def test_asyncio_clean():
    asyncio.run(roundtrip(False))

def test_uvloop_clean():
    uvloop.run(roundtrip(False))

def test_asyncio_leak():
    asyncio.run(roundtrip(True))

def test_uvloop_leak():
    uvloop.run(roundtrip(True))

async def test_coroutine_on_fixture_loop_clean():
    await roundtrip(False)

async def test_coroutine_on_fixture_loop_leak():
    await roundtrip(True)
"""

# What pytest-asyncio does, in a dozen lines: a function-scoped uvloop event loop
# fixture (opened at setup, closed at teardown) runs coroutine tests.
ASYNC_CONFTEST = """
import asyncio
import inspect
import pytest
import uvloop

@pytest.fixture
def event_loop():
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()

def pytest_collection_modifyitems(items):
    for item in items:
        if inspect.iscoroutinefunction(item.obj):
            item.fixturenames.append("event_loop")

@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        loop = pyfuncitem.funcargs["event_loop"]
        args = {n: pyfuncitem.funcargs[n] for n in pyfuncitem._fixtureinfo.argnames}
        loop.run_until_complete(pyfuncitem.obj(**args))
        return True
    return None
"""


def test_asyncio_and_uvloop_tests(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(ASYNC_CONFTEST)
    pytester.makepyfile(test_async=ASYNC_TESTS)
    result = pytester.runpytest_subprocess("--fdguard", "--fdguard-repeats=2", *QUIET)
    result.assert_outcomes(passed=3, failed=3)
    failed = sorted(line.split("::")[1].split(" ")[0] for line in _failed(result))
    assert failed == ["test_asyncio_leak", "test_coroutine_on_fixture_loop_leak",
                      "test_uvloop_leak"]
    assert _errors(result) == []
    # The loops' own fds (epoll, eventfd, libuv's /dev/null reserve for EMFILE)
    # are never blamed: they are closed with the loop.
    out = result.stdout.str()
    assert "eventpoll" not in out
    assert "eventfd" not in out
    assert "/dev/null" not in out
    result.stdout.fnmatch_lines([
        "*grows every run, not a one-time cache*",
        "*fd *: tcp CLOSE-WAIT 127.0.0.1:* -> 127.0.0.1:* socket:*",
    ])
    # The first uvloop.run() in a process opens a pipe pair for good: a cache.
    result.stdout.fnmatch_lines([
        "*fdguard: one-time caches (not leaks)*",
        "*test_uvloop_clean: 2 fd(s) opened on the first run only*",
        "*fd *: pipe pipe:*",
        "*fd *: pipe pipe:*",
    ])
