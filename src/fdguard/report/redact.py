"""Redact secrets, user names, hostnames and addresses from text that goes into a report.

What a report is made of comes from the target (command lines, paths, socket
addresses, log lines, stacks), and any of it may carry a secret. Rules:

- environment variables are never put in a report at all (nothing here reads
  them in); when the target still runs, the *values* of its environment are
  used as extra patterns only, so a secret the service echoed into a log line
  or a command line is caught even when no pattern knows its shape;
- every string from the target goes through `Redactor.redact`; argv lists
  through `redact_argv`, which also catches `--password VALUE` split over two
  arguments;
- the same value always becomes the same placeholder (`<ipv4-1>`,
  `<host-2>`), so a maintainer still sees that two lines name the same peer;
- the summary counts what was redacted per kind, never the values.

Loopback and unspecified addresses (127.0.0.0/8, ::1, 0.0.0.0, ::) and
`localhost` are kept: they identify nobody and matter for triage.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from fdguard.errors import UsageError

# Words that make an option or variable name a secret's name.
# Scoped case-insensitive, then a case-sensitive "no lowercase letter follows",
# so DB_PASSWORD, dbPassword and --api-key match but "passed", "signal" and
# "author" do not.
_SECRET_WORDS = (
    r"(?i:pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|apikey|access[-_]?key|"
    r"private[-_]?key|client[-_]?secret|credentials?|auth(?:[-_]?token)?|session[-_]?id|"
    r"cookie|signature)(?![a-z])"
)

# An option that carries a secret: --password=x, -password=x, --db-pass x.
_SECRET_OPT = re.compile(rf"^(--?[\w.-]*?(?:{_SECRET_WORDS})[\w.-]*)$")

# Ordered: the first matching rule names the kind. Each is (kind, regex, group
# to replace or 0 for the whole match).
_RULES: tuple[tuple[str, re.Pattern[str], int], ...] = (
    (
        "private key",
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
            re.S,
        ),
        0,
    ),
    ("aws access key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b"), 0),
    (
        "authorization header",
        re.compile(
            r"(?i)\b(?:proxy-)?authorization\s*[:=]\s*"
            r"((?:(?:bearer|basic|token|digest|negotiate)\s+)?[^\s'\",;]+)"
        ),
        1,
    ),
    ("bearer token", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]+=*)"), 1),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), 0),
    (
        "api token",
        re.compile(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|"
            r"xox[abposr]-[A-Za-z0-9-]{10,}|sk_(?:live|test)_[A-Za-z0-9]{10,}|"
            r"glpat-[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35}|npm_[A-Za-z0-9]{36})"
        ),
        0,
    ),
    (
        "password in url",
        re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/?#@'\"]*:([^\s@/'\"]+)@"),
        1,
    ),
    (
        "secret argument",
        re.compile(
            rf"(?:--?|\b)[\w.-]*?(?:{_SECRET_WORDS})[\w.-]*\s*[=:]\s*([^\s&'\",;]+)"
        ),
        1,
    ),
    (
        "secret argument",
        re.compile(rf"(?<![\w-])--?[\w.-]*?(?:{_SECRET_WORDS})[\w.-]*\s+([^\s<-][^\s'\",;]*)"),
        1,
    ),
    (
        "secret query parameter",
        re.compile(rf"[?&][\w.-]*?(?:{_SECRET_WORDS})[\w.-]*=([^&\s'\"#]+)"),
        1,
    ),
)

_HOME = re.compile(r"(?P<pre>/(?:home|Users)/)(?P<user>[^/\s:'\"]+)")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
# Candidate IPv6 literals; each is checked with `ipaddress` before it counts.
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})"
    r"(?![\w:.])"
)
_URL_HOST = re.compile(
    r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?:(?P<user>[^\s/@:'\"]*)(?::[^\s/@'\"]*)?@)?"
    r"(?P<host>[A-Za-z0-9.-]+)"
)

_KEEP_HOSTS = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

MAX_EXTRA_PATTERNS = 64


@dataclass(frozen=True, slots=True)
class RedactionSummary:
    """How many values of each kind were redacted (never the values)."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, int]:
        return dict(self.counts)


def _keep_address(text: str) -> bool:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return True  # not an address at all: leave it alone
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_unspecified


class Redactor:
    """Replaces secrets and identifying values with placeholders, counting them by kind.

    Args:
        extra: user patterns (regular expressions, `--redact-extra`); each match
            is replaced as kind "custom pattern".
        literals: values to redact wherever they appear (the target's environment
            values, its user name, the host name); kind "environment value" unless
            given as (kind, value) pairs.
        hostnames: this machine's names (default: from socket.gethostname).

    Raises:
        UsageError: an extra pattern is not a valid regular expression, or
            matches the empty string.
    """

    def __init__(
        self,
        *,
        extra: Sequence[str] = (),
        literals: Iterable[tuple[str, str]] = (),
        hostnames: Iterable[str] | None = None,
    ) -> None:
        if len(extra) > MAX_EXTRA_PATTERNS:
            raise UsageError(f"at most {MAX_EXTRA_PATTERNS} --redact-extra patterns")
        self._extra: list[re.Pattern[str]] = []
        for pat in extra:
            try:
                rx = re.compile(pat)
            except re.error as err:
                raise UsageError(f"--redact-extra {pat!r} is not a regular expression: {err}")\
                    from err
            if rx.match(""):
                raise UsageError(f"--redact-extra {pat!r} matches the empty string")
            self._extra.append(rx)
        self._counts: Counter[str] = Counter()
        self._tokens: dict[tuple[str, str], str] = {}
        self._per_kind: Counter[str] = Counter()
        if hostnames is None:
            hostnames = _own_hostnames()
        # Names of 4+ characters only, matched as whole words: a host called
        # "db" must not shred every word containing those letters.
        names = {h for h in hostnames if len(h) >= 4 and h.lower() not in _KEEP_HOSTS}
        self._hosts = [
            (h, re.compile(rf"(?<![\w.-]){re.escape(h)}(?![\w-])"))
            for h in sorted(names, key=len, reverse=True)
        ]
        # Literal values of 6+ characters (shorter ones, "1" or "true", would
        # shred the report), longest first so a value containing another wins.
        lits = {(k, v) for k, v in literals if len(v) >= 6}
        self._literals = sorted(lits, key=lambda kv: len(kv[1]), reverse=True)

    # -- placeholders -----------------------------------------------------------

    def _token(self, kind: str, value: str, label: str) -> str:
        self._counts[kind] += 1
        key = (label, value)
        tok = self._tokens.get(key)
        if tok is None:
            self._per_kind[label] += 1
            tok = f"<{label}-{self._per_kind[label]}>"
            self._tokens[key] = tok
        return tok

    def _secret(self, kind: str) -> str:
        self._counts[kind] += 1
        return "<redacted>"

    # -- public -----------------------------------------------------------------

    def summary(self) -> RedactionSummary:
        return RedactionSummary(dict(sorted(self._counts.items())))

    def redact(self, text: str | None) -> str:
        """`text` with every secret, user name, hostname and non-loopback address replaced."""
        if not text:
            return text or ""
        out = self.redact_secrets(text)
        out = _HOME.sub(self._home, out)
        for host, rx in self._hosts:
            if host in out:
                out, n = rx.subn("<hostname>", out)
                self._counts["hostname"] += n
        out = _URL_HOST.sub(self._url_host, out)
        out = _IPV6.sub(lambda m: self._address(m, "ipv6"), out)
        return _IPV4.sub(lambda m: self._address(m, "ipv4"), out)

    def redact_secrets(self, text: str) -> str:
        """Only the secret kinds (keys, tokens, passwords, custom and literal values).

        Safe on fdguard's own text too (links, versions): used as a last pass over
        a whole rendered report.
        """
        out = text
        for rx in self._extra:
            out = rx.sub(lambda _m: self._secret("custom pattern"), out)
        for kind, rx, group in _RULES:
            out = rx.sub(_replacer(kind, group, self._secret), out)
        # Literal values last: the patterns name the kind when they know it; the
        # literals catch what no pattern knows the shape of.
        for kind, value in self._literals:
            if value in out:
                n = out.count(value)
                self._counts[kind] += n
                out = out.replace(value, "<redacted>")
        return out

    def redact_argv(self, argv: Sequence[str]) -> list[str]:
        """A command line, each argument redacted; the value after `--password` too."""
        out: list[str] = []
        hide_next = False
        for arg in argv:
            if hide_next:
                hide_next = False
                if not arg.startswith("-"):
                    out.append(self._secret("secret argument"))
                    continue
            if _SECRET_OPT.match(arg):
                hide_next = True
            out.append(self.redact(arg))
        return out

    # -- helpers ----------------------------------------------------------------

    def _home(self, m: re.Match[str]) -> str:
        user = m.group("user")
        if user.startswith("<"):
            return m.group(0)
        self._counts["user name in path"] += 1
        return f"{m.group('pre')}<user>"

    def _url_host(self, m: re.Match[str]) -> str:
        whole = m.group(0)
        base = m.start(0)
        host = m.group("host")
        head = whole[: m.start("host") - base]
        user = m.group("user")
        if user and not user.startswith("<"):
            self._counts["user name in url"] += 1
            s, e = m.start("user") - base, m.end("user") - base
            head = head[:s] + "<user>" + head[e:]
        if host.lower() in _KEEP_HOSTS or not re.search(r"[A-Za-z]", host) or host == "<":
            return head + host  # addresses are handled by the address rules
        return head + self._token("hostname", host, "host")

    def _address(self, m: re.Match[str], label: str) -> str:
        text = m.group(0)
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return text
        if _keep_address(text):
            return text
        return self._token("address", text, label)


def _replacer(
    kind: str, group: int, secret: Callable[[str], str]
) -> Callable[[re.Match[str]], str]:
    def sub(m: re.Match[str]) -> str:
        if group == 0:
            return secret(kind)
        value = m.group(group)
        if value is None or value.startswith("<redacted>") or value.startswith("<"):
            return m.group(0)
        whole = m.group(0)
        s, e = m.start(group) - m.start(0), m.end(group) - m.start(0)
        return whole[:s] + secret(kind) + whole[e:]

    return sub


def _own_hostnames() -> list[str]:
    names = []
    with contextlib.suppress(OSError):
        names.append(socket.gethostname())
    # The FQDN would need a resolver round trip (DNS): not worth it for a report.
    return names


__all__ = ["MAX_EXTRA_PATTERNS", "RedactionSummary", "Redactor"]
