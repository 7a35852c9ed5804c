"""Pure parts of fdguard lab: version headers, Makefile.am source lists, verdicts, source roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from fdguard.errors import LabBuildError, UsageError
from fdguard.lab import repro
from fdguard.lab.build import (
    find_libuv_root,
    makefile_am_sources,
    parse_version_header,
    tree_digest,
    version_key,
)
from fdguard.lab.runner import Verdict, judge
from fdguard.lab.scenarios import CATALOGUE
from tests.lab_fake import write_fake_libuv


def test_version_header_release_dev_and_old_layout() -> None:
    new = b"#define UV_VERSION_MAJOR 1\n#define UV_VERSION_MINOR 44\n#define UV_VERSION_PATCH 2\n" \
          b"#define UV_VERSION_IS_RELEASE 1\n#define UV_VERSION_SUFFIX \"\"\n"
    assert parse_version_header(new) == "1.44.2"
    dev = new.replace(b"IS_RELEASE 1", b"IS_RELEASE 0").replace(b'""', b'"dev"')
    assert parse_version_header(dev) == "1.44.2-dev"
    with pytest.raises(LabBuildError):
        parse_version_header(b"#define NOT_UV 1\n")


def test_version_key_orders_numerically_and_dev_before_release() -> None:
    versions = ["1.9.1", "1.44.2", "1.45.0-dev", "1.45.0", "1.100.0", "1.20.3"]
    assert sorted(versions, key=version_key) == [
        "1.9.1", "1.20.3", "1.44.2", "1.45.0-dev", "1.45.0", "1.100.0"]


MAKEFILE_AM = """\
libuv_la_SOURCES = src/fs-poll.c \\
                   src/heap-inl.h \\
                   src/uv-common.c
if WINNT
libuv_la_SOURCES += src/win/core.c \\
                    src/win/fs.c
else  # WINNT
libuv_la_SOURCES += src/unix/core.c \\
                    src/unix/fs.c # trailing comment
endif  # WINNT
if DARWIN
libuv_la_SOURCES += src/unix/darwin.c
endif
if LINUX
libuv_la_SOURCES += src/unix/linux-core.c
if ANDROID
libuv_la_SOURCES += src/unix/android-ifaddrs.c
endif
endif
if !SUNOS
libuv_la_SOURCES += src/unix/not-sunos.c
endif
test_run_tests_SOURCES = test/test-list.c
"""


def test_makefile_am_sources_evaluates_automake_conditionals_for_linux() -> None:
    assert makefile_am_sources(MAKEFILE_AM) == [
        "src/fs-poll.c", "src/uv-common.c", "src/unix/core.c", "src/unix/fs.c",
        "src/unix/linux-core.c", "src/unix/not-sunos.c",
    ]


def test_find_libuv_root_in_vendored_and_nested_layouts(tmp_path: Path) -> None:
    sdist = tmp_path / "uvloop-0.0.1"
    root = write_fake_libuv(sdist / "vendor" / "libuv", leaky=False)
    assert find_libuv_root(sdist) == root
    assert find_libuv_root(tmp_path) == root  # a tarball's top directory
    assert find_libuv_root(root) == root
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LabBuildError):
        find_libuv_root(empty)


def test_tree_digest_follows_the_sources(tmp_path: Path) -> None:
    a = write_fake_libuv(tmp_path / "a", leaky=False)
    b = write_fake_libuv(tmp_path / "b", leaky=False)
    assert tree_digest(a) == tree_digest(b)
    write_fake_libuv(b, leaky=True)
    assert tree_digest(a) != tree_digest(b)


def test_judge_verdicts() -> None:
    it = [{"event": "iter", "i": i, "count": c} for i, c in enumerate([8, 9, 10], 1)]
    flat = [{"event": "iter", "i": i, "count": 8} for i in (1, 2, 3)]
    done = [{"event": "done"}]
    assert judge(it + done, 0, False)[0] is Verdict.LEAK
    assert judge(flat + done, 0, False)[0] is Verdict.NO_LEAK
    assert judge(it, -6, False)[:2] == (Verdict.CRASH, "SIGABRT")
    assert judge(it, -11, False)[:2] == (Verdict.CRASH, "SIGSEGV")
    assert judge(it, -9, True)[0] is Verdict.TIMEOUT
    assert judge([{"event": "unsupported", "detail": "no uv_x"}], 3, False) == (
        Verdict.UNSUPPORTED, None, "no uv_x")
    assert judge(it, 1, False)[0] is Verdict.ERROR  # exited before "done"


def test_catalogue_covers_the_core_and_both_paths() -> None:
    core = {"loop-churn", "loop-init-emfile", "tcp-connect-refused", "tcp-bind-in-use",
            "tcp-accept-emfile", "pipe-connect-accept", "udp-bind-send", "fs-open-close",
            "spawn-enoent", "signal-start-stop", "async-init-close", "fs-event-start-stop"}
    assert core <= set(CATALOGUE)
    apis = {s.api for s in CATALOGUE.values()}
    assert {"loop", "tcp", "pipe", "udp", "tty", "fs", "fs_event", "fs_poll", "signal",
            "spawn", "async", "dl"} <= apis
    for api in ("loop", "tcp", "pipe", "udp", "fs", "spawn"):
        assert {s.path for s in CATALOGUE.values() if s.api == api} == {"normal", "error"}


def test_repro_render_refuses_unknown_and_unwritten_scenarios(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(UsageError):
        repro.render("no-such-scenario")
    monkeypatch.delitem(repro.BODIES, "fs-scandir")
    with pytest.raises(UsageError, match="no C reproducer"):
        repro.render("fs-scandir")
    text = repro.render("loop-init-emfile")
    assert "dlopen(libuv_path" in text
    assert "uv_loop_init" in text
    assert CATALOGUE["loop-init-emfile"].expect in text
