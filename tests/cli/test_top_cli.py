"""`fdguard top` on real processes under real limits: counts, ranking, flags, filters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from fdguard.cli.main import cli
from tests.conftest import wait_until


def _holding(n: int) -> list[str]:
    """A python process under a 64-fd soft limit holding `n` extra fds on /dev/null."""
    code = (
        "import os, sys\n"
        f"held = [os.open('/dev/null', os.O_RDONLY) for _ in range({n})]\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    return ["prlimit", "--nofile=64:128", sys.executable, "-c", code]


def test_top_ranks_real_processes_by_share_of_their_soft_limit(spawn) -> None:
    near = spawn(_holding(54))
    half = spawn(_holding(28))
    res = CliRunner().invoke(cli, ["top", "-n", "0", "--json"], catch_exceptions=False)
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    rows = {p["pid"]: p for p in doc["processes"]}
    order = [p["pid"] for p in doc["processes"]]
    for child in (near, half):
        row = rows[child.pid]
        assert row["count"] == len(os.listdir(f"/proc/{child.pid}/fd"))
        assert (row["soft_limit"], row["hard_limit"]) == (64, 128)
        assert row["share"] == round(row["count"] / 64, 4)
    assert rows[near.pid]["share"] >= 0.8 > rows[half.pid]["share"] >= 0.45
    # Nearest the limit first: the 85% process before the 50% one, and both before
    # this test process (thousands of fds of headroom).
    assert order.index(near.pid) < order.index(half.pid) < order.index(os.getpid())
    assert doc["surveyed"] == len(doc["processes"])
    file_max = int(Path("/proc/sys/fs/file-nr").read_text().split()[2])
    assert doc["system"]["file_max"] == file_max


def test_top_flags_rows_near_the_limit_and_filters_by_name(spawn) -> None:
    near = spawn(_holding(54))
    half = spawn(_holding(28))
    res = CliRunner().invoke(cli, ["top", "--name", "^python"], catch_exceptions=False)
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0].startswith("host file table: ")
    assert lines[1].endswith("nearest their soft limit first:")
    rows = {int(line.split()[0]): line for line in lines[3:] if line.split()[0].isdigit()}
    assert rows[near.pid].endswith("near the limit")
    assert not rows[half.pid].endswith("near the limit")
    assert list(rows)[:2] == [near.pid, half.pid]
    assert all(" python" in line for line in rows.values())
    # -n 1: one row, and a line saying how many more there are.
    one = CliRunner().invoke(cli, ["top", "--name", "^python", "-n", "1"])
    assert one.stdout.splitlines()[-1].startswith("... and ")
    assert one.stdout.splitlines()[-2].split()[0] == str(near.pid)


def test_top_by_count_and_a_bad_pattern() -> None:
    res = CliRunner().invoke(cli, ["top", "--sort", "count", "--json", "-n", "0"])
    counts = [p["count"] for p in json.loads(res.stdout)["processes"]]
    assert counts == sorted(counts, reverse=True)
    bad = CliRunner().invoke(cli, ["top", "--name", "("])
    assert bad.exit_code == 2
    assert "--name '(' is not a regular expression" in bad.stderr


def test_a_real_zombie_holds_no_fds_and_is_left_out(spawn) -> None:
    code = (
        "import os, sys\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "print(pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = spawn([sys.executable, "-c", code])
    zombie = int(parent.ready)

    def state() -> str:
        return Path(f"/proc/{zombie}/stat").read_text().rsplit(")", 1)[1].split()[0]

    wait_until("the child to be a zombie", lambda: state() == "Z")
    res = CliRunner().invoke(cli, ["top", "-n", "0", "--json"], catch_exceptions=False)
    pids = {p["pid"] for p in json.loads(res.stdout)["processes"]}
    assert parent.pid in pids
    assert zombie not in pids


def test_another_users_limits_are_read_from_proc_when_prlimit_is_refused(spawn) -> None:
    """Without CAP_SYS_RESOURCE, prlimit() refuses even to read another user's limits:
    the survey reads /proc/PID/limits for it instead, and gets the same numbers."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is part of every Debian"
    other = spawn(["prlimit", "--nofile=77:99", setpriv, "--reuid=65534", "--regid=65534",
                   "--clear-groups", "sleep", "600"], ready=False)

    def exec_done() -> bool:
        status = Path(f"/proc/{other.pid}/status").read_text()
        comm = Path(f"/proc/{other.pid}/comm").read_text()
        return "\nUid:\t65534" in status and comm == "sleep\n"

    wait_until("the sleeper to run as nobody", exec_done)
    argv = [setpriv, "--inh-caps=-sys_resource", "--bounding-set=-sys_resource",
            sys.executable, "-m", "fdguard", "top", "--json", "-n", "0", "--name", "^sleep$"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    rows = {p["pid"]: p for p in json.loads(out.stdout)["processes"]}
    assert (rows[other.pid]["soft_limit"], rows[other.pid]["hard_limit"]) == (77, 99)
    # The refusal is real: the same call in that process is EPERM.
    probe = subprocess.run(
        [setpriv, "--inh-caps=-sys_resource", "--bounding-set=-sys_resource", sys.executable,
         "-c", f"import resource; resource.prlimit({other.pid}, resource.RLIMIT_NOFILE)"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert "PermissionError" in probe.stderr


def test_refreshing_top_ranks_the_process_opening_fds_fastest_first(spawn) -> None:
    # Opens one fd every 5 ms after it says ready, up to 1,500 (7.5 s): still growing
    # over the three refreshes 0.2 s apart below on a loaded machine, and bounded.
    code = (
        "import os, sys, time\n"
        "print('ready', flush=True)\n"
        "held = []\n"
        "for _ in range(1500):\n"
        "    held.append(os.open('/dev/null', os.O_RDONLY))\n"
        "    time.sleep(0.005)\n"
        "sys.stdin.read()\n"
    )
    grower = spawn(["prlimit", "--nofile=2048:2048", sys.executable, "-c", code])
    steady = spawn(_holding(10))
    res = CliRunner().invoke(
        cli,
        ["top", "--interval", "0.2", "--rounds", "3", "--sort", "growth", "--json", "-n", "0",
         "--name", "^python"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0
    rounds = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rounds) == 3
    assert [r["elapsed"] for r in rounds] == sorted(r["elapsed"] for r in rounds)
    last = {p["pid"]: p for p in rounds[-1]["processes"]}
    assert rounds[-1]["processes"][0]["pid"] == grower.pid
    assert last[grower.pid]["since_start"] > 0
    assert last[grower.pid]["change"] > 0
    assert last[steady.pid]["since_start"] == 0
    assert last[steady.pid]["new"] is False
    # Counts add up: what it opened since the start is its count now minus then.
    then = {p["pid"]: p["count"] for p in rounds[0]["processes"]}
    assert last[grower.pid]["since_start"] == last[grower.pid]["count"] - then[grower.pid]


def test_refresh_options_need_an_interval() -> None:
    for args in (["--rounds", "2"], ["--sort", "growth"]):
        res = CliRunner().invoke(cli, ["top", *args])
        assert res.exit_code == 2
        assert "needs --interval" in res.stderr


def test_refreshing_top_prints_a_stamped_block_per_refresh() -> None:
    res = CliRunner().invoke(cli, ["top", "--interval", "0.1", "--rounds", "2", "-n", "1"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert [line[:4] for line in lines if line.startswith("--- ")] == ["--- ", "--- "]
    assert sum("CHANGE   SINCE" in line for line in lines) == 2
    assert lines[-1].startswith("CHANGE: since the last refresh; SINCE: over ")
