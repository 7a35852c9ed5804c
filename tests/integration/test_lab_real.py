"""fdguard lab against real libuvs: Debian's 1.44.2, uvloop's bundled 1.52.1, and releases built
from the libuv that uvloop sdists on PyPI vendor (1.20.3 with the Makefile.am source list, 1.48.0
with cmake), each in a real child process; builds go to a cache directory the tests create.

Known ground truth from libuv's history (see fdguard.known's base):
- loop-init-epoll-leak: a uv_loop_init that fails after creating its epoll fd leaks it; fixed
  in 1.51.0. Debian's 1.44.2 has it, uvloop 0.23's 1.52.1 does not.
- signal-pipe-unload-leak: unloading libuv.so left its global signal lock pipe open (two fds
  per load/unload); fixed in 1.21.0. 1.20.3 has it, 1.48.0 does not.
- scm-rights-error-path-leak: when queueing fds received over an IPC pipe fails (ENOMEM), the
  rest of the message's fds leak; fixed in 1.49.0 (4fce06ec9). The lab finds it in 1.46 and 1.48
  but not in 1.44.2: 1.44.2's error path closed pi[i]; the leak came with ff7dcd265 (memcpy
  instead of type punning, first in 1.45.0), which closed the same fd on every pass.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from fdguard.lab.binding import HandleType, Libuv, ReqType
from fdguard.lab.bisect import bisect_commits, bisect_releases
from fdguard.lab.build import LibuvBuild, build, makefile_am_sources
from fdguard.lab.repro import write
from fdguard.lab.runner import Verdict, run_scenario
from fdguard.lab.sources import fetch_uvloop_sdist
from fdguard.lab.versions import LibuvTarget, resolve
from tests.lab_fake import write_fake_libuv

N = 5


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-cache")


@pytest.fixture(scope="module")
def sdists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sdists")


@pytest.fixture(scope="module")
def libuv_1_20(cache: Path, sdists: Path) -> LibuvBuild:
    return build(fetch_uvloop_sdist("0.10.3", sdists), cache_dir=cache)


@pytest.fixture(scope="module")
def libuv_1_48(cache: Path, sdists: Path) -> LibuvBuild:
    return build(fetch_uvloop_sdist("0.21.0", sdists), cache_dir=cache)


def _target(b: LibuvBuild) -> LibuvTarget:
    return LibuvTarget(b.version, b.library, "build")


def _compile_repro(scenario: str, out: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None, "gcc missing: scripts/setup.sh installs it"
    r = write(scenario, out)
    subprocess.run(r.build_command.split(), cwd=out, check=True, capture_output=True)
    return out / "repro"


def _repro_counts(exe: Path, library: Path, n: int) -> tuple[list[int], str]:
    proc = subprocess.run([str(exe), str(library), str(n)], capture_output=True, text=True,
                          timeout=60, check=False)
    counts = [int(line.split()[3]) for line in proc.stdout.splitlines()
              if line.startswith("iter ")]
    assert proc.returncode in (0, 1), proc.stderr
    return [c - counts[0] for c in counts], proc.stdout


# -- the binding across versions -------------------------------------------------


def test_binding_sizes_and_versions_across_two_releases() -> None:
    system, uvloop = resolve("system"), resolve("uvloop")
    versions = set()
    for target in (system, uvloop):
        uv = Libuv(str(target.path))
        versions.add(uv.version)
        assert uv.uv_loop_size() >= 400
        assert uv.uv_handle_size(int(HandleType.TCP)) > uv.uv_handle_size(int(HandleType.ASYNC))
        assert uv.uv_req_size(int(ReqType.CONNECT)) > 0
        assert uv.err_name(-111) == "ECONNREFUSED"
    assert versions == {"1.44.2", "1.52.1"}


@pytest.mark.parametrize("spec", ["system", "uvloop"])
@pytest.mark.parametrize("scenario", ["tcp-connect-refused", "spawn-enoent", "fs-copyfile-emfile",
                                      "pipe-bind-eacces"])
def test_error_paths_run_and_stay_clean_on_both_releases(spec: str, scenario: str) -> None:
    r = run_scenario(scenario, resolve(spec), iterations=N)
    assert r.verdict is Verdict.NO_LEAK, r
    assert r.iterations == N
    expected = {"tcp-connect-refused": "cb=ECONNREFUSED", "spawn-enoent": "spawn=ENOENT",
                "fs-copyfile-emfile": "copyfile=EMFILE", "pipe-bind-eacces": "bind=EACCES",
                }[scenario]
    assert all(expected in o for o in r.outcomes), r.outcomes


# -- leak, no leak, crash ---------------------------------------------------------


def test_loop_init_emfile_leaks_epoll_on_debian_and_not_on_the_fixed_release() -> None:
    leaky = run_scenario("loop-init-emfile", resolve("system"), iterations=N)
    fixed = run_scenario("loop-init-emfile", resolve("uvloop"), iterations=N)
    assert leaky.version == "1.44.2"
    assert leaky.verdict is Verdict.LEAK
    assert leaky.outcomes == ("init=EMFILE",)
    assert leaky.deltas == (0, 1, 2, 3, 4)
    assert leaky.growth_by_kind == (("epoll", N - 1),)
    assert [f.kind for f in leaky.leaked] == ["epoll"] * (N - 1)
    assert fixed.version == "1.52.1"
    assert fixed.outcomes == ("init=EMFILE",)
    assert fixed.verdict is Verdict.NO_LEAK
    assert fixed.deltas == (0,) * N


def test_a_crash_in_the_scenario_is_a_result_with_its_signal() -> None:
    r = run_scenario("tcp-close-twice", resolve("system"), iterations=N)
    assert r.verdict is Verdict.CRASH
    assert r.signal == "SIGABRT"
    assert "uv__is_closing" in r.detail
    assert r.version == "1.44.2"  # the child got as far as setup before aborting


def test_enomem_sweep_through_loop_init_aborts_on_1_44_and_is_handled_on_1_52() -> None:
    # uv_replace_allocator with a malloc failing on the Nth call, N = iteration.
    old = run_scenario("loop-init-enomem", resolve("system"), iterations=N)
    new = run_scenario("loop-init-enomem", resolve("uvloop"), iterations=N)
    assert old.verdict is Verdict.CRASH
    assert old.signal == "SIGABRT"
    assert old.outcomes[0] == "init=ENOMEM (allocation failed)"
    assert new.verdict is Verdict.NO_LEAK
    assert new.outcomes[0] == "init=ENOMEM (allocation failed)"
    assert new.exit_status == 0


def test_a_hanging_scenario_is_killed_and_reported(tmp_path: Path) -> None:
    # A fake libuv whose uv_loop_init never returns.
    root = write_fake_libuv(tmp_path / "hang", leaky=False)
    core = root / "src" / "unix" / "core.c"
    core.write_text(core.read_text().replace(
        "int uv_loop_init(void* loop) {", "int uv_loop_init(void* loop) {\n  for (;;) pause();"))
    b = build(root, cache_dir=tmp_path / "cache")
    r = run_scenario("loop-churn", _target(b), iterations=3, timeout=3)
    assert r.verdict is Verdict.TIMEOUT


# -- builds and caching ---------------------------------------------------------------


def test_build_is_cached_by_tree_content(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = write_fake_libuv(tmp_path / "uv", leaky=True)
    first = build(root, cache_dir=cache)
    again = build(root, cache_dir=cache)
    assert (first.cached, again.cached) == (False, True)
    assert first.method == "gcc"
    assert again.library == first.library
    assert first.library.stat().st_mtime == again.library.stat().st_mtime
    write_fake_libuv(root, leaky=False)
    fixed = build(root, cache_dir=cache)
    assert not fixed.cached
    assert fixed.key != first.key
    assert fixed.version == first.version == "1.99.0"
    assert run_scenario("loop-churn", _target(first), iterations=4).verdict is Verdict.LEAK
    assert run_scenario("loop-churn", _target(fixed), iterations=4).verdict is Verdict.NO_LEAK


def test_real_release_builds_from_uvloop_sdists_and_cache_hits(
    libuv_1_20: LibuvBuild, libuv_1_48: LibuvBuild, cache: Path, sdists: Path
) -> None:
    assert (libuv_1_20.version, libuv_1_20.method) == ("1.20.3", "gcc")  # no CMakeLists
    assert (libuv_1_48.version, libuv_1_48.method) == ("1.48.0", "cmake")
    with tarfile.open(sdists / "uvloop-0.10.3.tar.gz") as tar:
        member = tar.extractfile("uvloop-0.10.3/vendor/libuv/Makefile.am")
        assert member is not None
        sources = makefile_am_sources(member.read().decode())
    assert "src/unix/linux-core.c" in sources
    assert not any("/win/" in s for s in sources)
    again = build(sdists / "uvloop-0.10.3.tar.gz", cache_dir=cache)
    assert again.cached
    assert again.library == libuv_1_20.library
    assert Libuv(str(libuv_1_20.library)).version == "1.20.3"


# -- bisect -------------------------------------------------------------------------------


def test_bisect_across_releases_names_the_fixing_release(
    libuv_1_20: LibuvBuild, libuv_1_48: LibuvBuild
) -> None:
    targets = [resolve("uvloop"), resolve("system"), _target(libuv_1_48), _target(libuv_1_20)]
    rb = bisect_releases("libuv-load-unload", targets, iterations=4)
    assert [r.version for r in rb.results] == ["1.20.3", "1.44.2", "1.48.0", "1.52.1"]
    assert [r.verdict for r in rb.results] == [Verdict.LEAK] + [Verdict.NO_LEAK] * 3
    assert rb.results[0].growth_by_kind == (("pipe", 6),)  # 2 per unload after warm-up
    (t,) = rb.transitions
    assert (t.before.version, t.after.version) == ("1.20.3", "1.44.2")


def test_bisect_across_releases_finds_where_a_leak_came_and_went(libuv_1_48: LibuvBuild) -> None:
    targets = [resolve("system"), _target(libuv_1_48), resolve("uvloop")]
    rb = bisect_releases("pipe-ipc-queue-enomem", targets, iterations=4)
    assert [(r.version, r.verdict) for r in rb.results] == [
        ("1.44.2", Verdict.NO_LEAK), ("1.48.0", Verdict.LEAK), ("1.52.1", Verdict.NO_LEAK)]
    assert rb.results[1].growth_by_kind == (("unix", 3),)
    assert rb.results[1].outcomes == ("read=ENOMEM accepted=[]",)
    assert [(t.before.version, t.after.version) for t in rb.transitions] == [
        ("1.44.2", "1.48.0"), ("1.48.0", "1.52.1")]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_bisect_down_to_the_commit_with_cached_builds(tmp_path: Path) -> None:
    repo = tmp_path / "uv"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "lab@example.invalid")
    _git(repo, "config", "user.name", "lab")
    commits = []
    for i in range(9):
        leaky = i < 6  # the 7th commit fixes it
        write_fake_libuv(repo, leaky=leaky, revision=i)
        _git(repo, "add", "-A")
        subject = "loop: close the loop fd in uv_loop_close" if i == 6 else f"unrelated {i}"
        _git(repo, "commit", "-q", "-m", subject)
        commits.append(_git(repo, "rev-parse", "HEAD"))
    head_before = _git(repo, "rev-parse", "HEAD")
    cache = tmp_path / "cache"
    cb = bisect_commits("loop-churn", repo, commits[0], commits[-1], iterations=3,
                        cache_dir=cache)
    assert (cb.old_verdict, cb.new_verdict) == (Verdict.LEAK, Verdict.NO_LEAK)
    assert cb.first_new.commit == commits[6]
    assert cb.first_new.subject == "loop: close the loop fd in uv_loop_close"
    assert cb.last_old.commit == commits[5]
    assert cb.candidates == 8
    assert len(cb.probes) <= 2 + 4  # both ends + log2(8) + 1
    assert _git(repo, "rev-parse", "HEAD") == head_before  # checkout untouched
    assert _git(repo, "status", "--porcelain") == ""
    again = bisect_commits("loop-churn", repo, commits[0], commits[-1], iterations=3,
                           cache_dir=cache)
    assert again.first_new.commit == commits[6]
    assert all(p.cached for p in again.probes)


# -- the reproducer --------------------------------------------------------------------------


def test_reproducer_compiles_and_prints_the_lab_counts_on_debian_libuv(tmp_path: Path) -> None:
    exe = _compile_repro("loop-init-emfile", tmp_path)
    system = resolve("system")
    lab = run_scenario("loop-init-emfile", system, iterations=N)
    deltas, out = _repro_counts(exe, system.path, N)
    assert tuple(deltas) == lab.deltas == (0, 1, 2, 3, 4)
    assert out.count("-> anon_inode:[eventpoll]") == N - 1
    assert "libuv 1.44.2" in out
    assert "verdict leak" in out
    assert out.count("init=EMFILE") == N


def test_reproducer_confirms_the_unload_leak_on_1_20_and_not_on_1_48(
    tmp_path: Path, libuv_1_20: LibuvBuild, libuv_1_48: LibuvBuild
) -> None:
    exe = _compile_repro("libuv-load-unload", tmp_path)
    for b, leaks in ((libuv_1_20, True), (libuv_1_48, False)):
        lab = run_scenario("libuv-load-unload", _target(b), iterations=4)
        deltas, out = _repro_counts(exe, b.library, 4)
        assert tuple(deltas) == lab.deltas
        assert ("verdict leak" in out) is leaks
        assert (lab.verdict is Verdict.LEAK) is leaks
    assert lab.deltas == (0, 0, 0, 0)


def test_reproducer_confirms_the_ipc_enomem_leak_on_1_48_and_not_on_1_44(
    tmp_path: Path, libuv_1_48: LibuvBuild
) -> None:
    exe = _compile_repro("pipe-ipc-queue-enomem", tmp_path)
    for target, leaks in ((_target(libuv_1_48), True), (resolve("system"), False)):
        lab = run_scenario("pipe-ipc-queue-enomem", target, iterations=4)
        deltas, out = _repro_counts(exe, target.path, 4)
        assert tuple(deltas) == lab.deltas == ((0, 1, 2, 3) if leaks else (0, 0, 0, 0))
        assert out.count("read=ENOMEM") == 4
        assert out.count("-> socket:[") == (3 if leaks else 0)
        outcomes = tuple(dict.fromkeys(line.split(maxsplit=6)[6] for line in out.splitlines()
                                       if line.startswith("iter ")))
        assert outcomes == lab.outcomes == ("read=ENOMEM accepted=[]",), out


def test_error_path_reproducers_match_the_lab_on_a_built_1_48(
    tmp_path: Path, libuv_1_48: LibuvBuild
) -> None:
    # The same C sources as on Debian's 1.44.2 (test_lab_repro_real.py), on another release.
    for scenario in ("tcp-bind-in-use", "tcp-accept-emfile", "pipe-connect-emfile",
                     "udp-bind-in-use", "fs-open-emfile", "fs-open-eacces", "spawn-emfile",
                     "fs-event-emfile", "tcp-close-pending-connect", "signal-start-stop"):
        exe = _compile_repro(scenario, tmp_path / scenario)
        lab = run_scenario(scenario, _target(libuv_1_48), iterations=4)
        deltas, out = _repro_counts(exe, libuv_1_48.library, 4)
        outcomes = tuple(dict.fromkeys(line.split(maxsplit=6)[6] for line in out.splitlines()
                                       if line.startswith("iter ")))
        assert "libuv 1.48.0" in out
        assert (tuple(deltas), outcomes) == (lab.deltas, lab.outcomes), (scenario, out)
        assert lab.verdict is Verdict.NO_LEAK, lab


# -- runtime scenarios (Node.js, uvloop), counted from outside -----------------------------


@pytest.mark.node
@pytest.mark.parametrize("scenario", ["node-worker-churn", "node-spawn-enoent",
                                      "uvloop-loop-churn", "uvloop-connect-refused"])
def test_runtime_scenarios_run_on_their_bundled_libuv(scenario: str, node: str) -> None:
    r = run_scenario(scenario, resolve("system"), iterations=4)
    assert r.verdict is Verdict.NO_LEAK, r
    assert r.version == ("1.46.0" if scenario.startswith("node") else "1.52.1")
    assert r.libuv == scenario.split("-", maxsplit=1)[0]
    assert len(r.counts) == 5
    assert r.outcomes == {"node-worker-churn": ("exit=1",), "node-spawn-enoent": ("ENOENT",),
                          "uvloop-loop-churn": ("closed",),
                          "uvloop-connect-refused": ("ConnectionRefusedError",)}[scenario]


@pytest.mark.node
def test_a_leaking_node_script_is_judged_from_outside(
    node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fdguard.lab import runtime

    leaky = runtime.RuntimeScenario(
        "node-test-leak", "node", "fs", "normal", "fs.openSync without close", "a leak",
        "const fs = require('fs');\nasync function setup() {}\n"
        "async function iterate() { fs.openSync(process.execPath, 'r'); return 'opened'; }\n")
    monkeypatch.setitem(runtime.RUNTIME_CATALOGUE, leaky.name, leaky)
    r = run_scenario(leaky.name, resolve("system"), iterations=4)
    assert r.verdict is Verdict.LEAK
    assert r.deltas == (0, 1, 2, 3)
    assert r.growth_by_kind == (("file", 3),)
    assert {f.target for f in r.leaked} == {str(Path(node).resolve())}
