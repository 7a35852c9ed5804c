"""Redaction: every kind of secret and identifying value is replaced, counted, and never echoed."""

from __future__ import annotations

import pytest

from fdguard.errors import UsageError
from fdguard.report.redact import Redactor

AWS = "AKIAIOSFODNN7EXAMPLE"
BEARER = ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
          "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")


def _r(**kw: object) -> Redactor:
    kw.setdefault("hostnames", ["buildhost01"])
    return Redactor(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        (f"key {AWS} in a log", AWS, "aws access key"),
        (f"curl -H 'Authorization: Bearer {BEARER}'", BEARER, "authorization header"),
        ("sent bearer abcdef0123456789abcdef", "abcdef0123456789abcdef", "bearer token"),
        (f"token {BEARER} seen", BEARER, "jwt"),
        ("postgres://app:s3cr3t-pw@db.internal:5432/x", "s3cr3t-pw", "password in url"),
        ("node s.js --password=hunter2x", "hunter2x", "secret argument"),
        ("node s.js --db-password hunter2x", "hunter2x", "secret argument"),
        ("DB_PASSWORD=hunter2x ./run", "hunter2x", "secret argument"),
        ("dbPassword: hunter2x", "hunter2x", "secret argument"),
        ("GET /x?api_key=zz9zz9zz&page=2", "zz9zz9zz", "secret argument"),
        ("ghp_0123456789abcdefghij0123456789abcdef", "ghp_0123456789abcdefghij", "api token"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow",
         "private key"),
    ],
)
def test_each_secret_kind_is_replaced_and_counted(text: str, secret: str, kind: str) -> None:
    r = _r()
    out = r.redact(text)
    assert secret not in out
    assert "<redacted>" in out
    counts = r.summary().counts
    assert counts.get(kind, 0) >= 1, counts
    # The summary names kinds and counts only.
    assert secret not in repr(r.summary())


def test_argv_value_after_a_secret_option_is_hidden() -> None:
    r = _r()
    argv = ["node", "app.js", "--password", "hunter2", "--port", "8080", "--api-key", "k1k1k1",
            "-v"]
    out = r.redact_argv(argv)
    assert out == ["node", "app.js", "--password", "<redacted>", "--port", "8080", "--api-key",
                   "<redacted>", "-v"]
    assert r.summary().counts["secret argument"] == 2


def test_user_names_hosts_and_addresses() -> None:
    r = _r()
    out = r.redact(
        "/home/alice/app/server.js on buildhost01 -> postgres://bob@db.example.com:5432 "
        "peer 10.1.2.3:5000 and 10.1.2.3:6000, [2001:db8::7]:443, 192.168.0.9"
    )
    assert "alice" not in out
    assert "/home/<user>/app/server.js" in out
    assert "buildhost01" not in out
    assert "<hostname>" in out
    assert "db.example.com" not in out
    assert "<host-1>" in out
    assert "bob" not in out
    # The same address always becomes the same placeholder.
    assert out.count("<ipv4-1>") == 2
    assert "<ipv4-2>" in out
    assert "<ipv6-1>" in out
    counts = r.summary().counts
    assert counts["address"] == 4
    assert counts["user name in path"] == 1
    assert counts["user name in url"] == 1


def test_loopback_versions_and_times_are_kept() -> None:
    r = _r(hostnames=["db"])  # a 2-letter host name must not shred words
    text = ("listening on 127.0.0.1:3000, [::1]:3000, 0.0.0.0:80 and :: at 18:07:52; "
            "libuv 1.46.0, node::fs::Open, uv__fs_work, database ok, signal: SIGTERM, "
            "tests passed: 5, author: me, mac aa:bb:cc:dd:ee:ff, localhost:8080")
    assert r.redact(text) == text
    assert r.summary().total == 0


def test_secrets_only_pass_leaves_links_alone() -> None:
    r = _r()
    text = (f"see https://github.com/libuv/libuv/commit/942e1418 and 10.0.0.1; key {AWS}")
    out = r.redact_secrets(text)
    assert "https://github.com/libuv/libuv/commit/942e1418" in out
    assert "10.0.0.1" in out  # addresses are the full pass's business
    assert AWS not in out


def test_extra_patterns_and_literal_values() -> None:
    r = _r(extra=[r"acme-\d{4}"], literals=[("environment value", "s3cr3t-from-env")])
    out = r.redact("order acme-1234 with s3cr3t-from-env, short ones stay: abc")
    assert "acme-1234" not in out
    assert "s3cr3t-from-env" not in out
    assert r.summary().counts == {"custom pattern": 1, "environment value": 1}


def test_short_literals_are_not_patterns() -> None:
    r = _r(literals=[("environment value", "1"), ("environment value", "true")])
    assert r.redact("1 true 10") == "1 true 10"


@pytest.mark.parametrize("bad", ["(", "a*"])
def test_bad_extra_patterns_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        Redactor(extra=[bad], hostnames=[])


def test_environment_values_become_patterns_only_when_secret_like() -> None:
    from fdguard.report.collect import env_literals

    env = {
        "PWD": "/work/app",
        "PATH": "/usr/local/bin:/usr/bin",
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "DATABASE_URL": "postgres://u:p@db/x",
        "RANDOM_ID": "a81f0c22d9e44b7f",
        "GREETING": "hello world",
    }
    values = {v for _, v in env_literals(env)}
    assert values == {"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "postgres://u:p@db/x",
                      "a81f0c22d9e44b7f"}
