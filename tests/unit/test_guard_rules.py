"""Pure parts of the guard: listen addresses, TOML programs, triggers, notify parsing, units."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from fdguard.errors import UsageError
from fdguard.guard import triggers as trig
from fdguard.guard.notify import parse_notify
from fdguard.guard.spec import (
    GuardConfig,
    ProgramSpec,
    Readiness,
    Triggers,
    load_config,
    parse_config,
    parse_listen,
)
from fdguard.guard.systemd import render_units


@pytest.mark.parametrize(
    ("text", "name", "family", "host", "port", "path"),
    [
        ("127.0.0.1:8080", "http", "tcp", "127.0.0.1", 8080, ""),
        ("api=127.0.0.1:0", "api", "tcp", "127.0.0.1", 0, ""),
        ("[::1]:9000", "http", "tcp", "::1", 9000, ""),
        ("tcp:[::1]:9000", "http", "tcp", "::1", 9000, ""),
        (":8080", "http", "tcp", "127.0.0.1", 8080, ""),
        ("ctl=unix:/run/x.sock", "ctl", "unix", "", 0, "/run/x.sock"),
    ],
)
def test_parse_listen(text: str, name: str, family: str, host: str, port: int,
                      path: str) -> None:
    ls = parse_listen(text)
    assert (ls.name, ls.family, ls.host, ls.port, ls.path) == (name, family, host, port, path)


@pytest.mark.parametrize("bad", ["8080", "host:99999", "unix:", "bad name=1.2.3.4:5", "a:b:c"])
def test_parse_listen_rejects(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_listen(bad)


def test_ipv6_prints_bracketed() -> None:
    assert str(parse_listen("[::1]:80")) == "[::1]:80"


def test_toml_programs_each_with_own_triggers_and_limits(tmp_path: Path) -> None:
    f = tmp_path / "shop.toml"
    f.write_text(
        """
[guard]
interval = 0.5

[programs.api]
command = "node server.js --port 0"
workers = 2
listen = ["127.0.0.1:8080"]
max_fd_share = 0.8
nofile = 4096

[programs.thumbs]
command = ["python3", "thumbs.py"]
ready = "notify"
max_lifetime = 3600
lifetime_jitter = 300
env = { LEAK_EVERY = "3" }
"""
    )
    cfg = load_config(f)
    assert cfg.name == "shop"
    assert cfg.interval == 0.5
    api, thumbs = cfg.programs
    assert api.argv == ("node", "server.js", "--port", "0")
    assert api.workers == 2
    assert api.readiness is Readiness.ACCEPTING
    assert api.triggers.max_fd_share == 0.8
    assert api.nofile == 4096
    assert thumbs.readiness is Readiness.NOTIFY
    assert thumbs.triggers == Triggers(max_lifetime=3600, lifetime_jitter=300)
    assert thumbs.env == (("LEAK_EVERY", "3"),)


@pytest.mark.parametrize(
    ("doc", "msg"),
    [
        ({}, "at least one"),
        ({"programs": {"a": {"command": "x", "bogus": 1}}}, "unknown keys"),
        ({"programs": {"a": {"command": 5}}}, "command must be"),
        ({"programs": {"a": {"command": "x", "max_fd_share": 1.5}}}, "max_fd_share"),
        ({"programs": {"a": {"command": "x", "max_fd_share": "high"}}}, "must be a number"),
        ({"programs": {"a": {"command": "x", "ready": "accepting"}}}, "needs a listening"),
        ({"programs": {"a": {"command": "x", "listen": "127.0.0.1:1"},
                       "b": {"command": "y", "listen": "127.0.0.1:1"}}}, "one owner"),
    ],
)
def test_bad_configs_are_usage_errors(doc: dict[str, object], msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        parse_config(doc)


def test_fd_share_trigger() -> None:
    t = Triggers(max_fd_share=0.8)
    assert trig.fd_share_reason(799, 1000, t) is None
    reason = trig.fd_share_reason(800, 1000, t)
    assert reason == "fd share 80% >= 80% (800/1000 fds)"
    assert trig.fd_share_reason(10_000, None, t) is None  # unlimited: never
    assert trig.fd_share_reason(999, 1000, Triggers()) is None


@dataclass(frozen=True)
class V:
    leak: bool
    eta_seconds: float | None
    rate_per_hour: float | None


def test_eta_trigger() -> None:
    t = Triggers(eta_below=600)
    assert trig.eta_reason(V(True, 300, 120), t) == "leak ETA 300s < 600s at 120 fds/h"
    assert trig.eta_reason(V(True, 900, 120), t) is None
    assert trig.eta_reason(V(False, 10, 120), t) is None  # no leak verdict: no restart
    assert trig.eta_reason(V(True, None, None), t) is None
    assert trig.eta_reason(None, t) is None
    assert trig.eta_reason(V(True, 1, 1), Triggers()) is None


def test_lifetime_with_jitter_is_spread_and_bounded() -> None:
    t = Triggers(max_lifetime=100, lifetime_jitter=20)
    rng = random.Random(7)
    deadlines = [trig.lifetime_deadline(1000.0, t, rng) for _ in range(200)]
    assert all(d is not None and 1100 <= d <= 1120 for d in deadlines)
    assert len({round(d or 0, 3) for d in deadlines}) > 150  # workers do not restart together
    assert trig.lifetime_deadline(0.0, Triggers(), rng) is None
    assert trig.lifetime_reason(1099.0, 1000.0, 1100.0) is None
    assert trig.lifetime_reason(1100.0, 1000.0, 1100.0) == "max lifetime reached (up 100s)"


def test_backoff_doubles_and_caps() -> None:
    assert [trig.backoff_delay(n, 0.5, 3.0) for n in range(6)] == [0, 0.5, 1, 2, 3, 3]


def test_parse_notify() -> None:
    assert parse_notify(b"READY=1\nSTATUS=up and running\nMAINPID=42\njunk\n") == {
        "READY": "1",
        "STATUS": "up and running",
        "MAINPID": "42",
    }


def test_systemd_units() -> None:
    prog = ProgramSpec(
        name="api", argv=("node", "s.js"), listen=(parse_listen("127.0.0.1:8080"),),
        grace=20, nofile=4096,
    )
    units = render_units(GuardConfig("api", (prog,)), ["/usr/bin/fdguard", "guard", "--", "node",
                                                        "s.js"])
    files = dict(units.files)
    assert set(files) == {"fdguard-api.socket", "fdguard-api.service"}
    sock, svc = files["fdguard-api.socket"], files["fdguard-api.service"]
    assert "ListenStream=127.0.0.1:8080" in sock
    assert "FileDescriptorName=http" in sock
    assert "ExecStart=/usr/bin/fdguard guard -- node s.js" in svc
    assert "LimitNOFILE=4096" in svc
    assert "Restart=on-failure" in svc
    assert "TimeoutStopSec=30" in svc  # longer than the drain grace
    assert "Requires=fdguard-api.socket" in svc
