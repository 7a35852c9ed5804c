"""Series from Prometheus, for `fdguard analyze` and `fdguard watch --history-from`.

A fleet already scraping `process_open_fds` (every exporter publishes it) holds days
of history that fdguard's detector can judge at once, instead of watching for a day
before it can tell a leak from a daily cycle. This module fetches a range query
(`/api/v1/query_range`) or reads its saved JSON (the API's response, or the bare
`result` array that `promtool query range -o json` prints) into one `PromSeries` per
label set, judges them (`judge_all`), and reads one process's samples as scraped
for a watch to start from (`history_source`). It never prints and raises
`UsageError` for anything unusable, naming what was wrong.

The soft limit of each series, for the ETA, comes from a second range query whose
series are matched by their labels (all but `__name__`): `process_max_fds` with the
same selector when the query is a selector of `process_open_fds`, else the one the
caller names.
"""

from __future__ import annotations

import base64
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from fdguard.detect import DetectorConfig, LeakVerdict, analyze
from fdguard.errors import UsageError

MAX_POINTS = 11_000
"""Prometheus refuses a range query of more points than this per series."""

_OPEN_FDS = re.compile(r"^\s*process_open_fds\s*(\{[^{}]*\})?\s*$")


@dataclass(frozen=True)
class PromSeries:
    """One series of a range query: its labels, and samples in time order."""

    labels: dict[str, str]
    times: list[float]
    values: list[float]

    @property
    def name(self) -> str:
        """The series in PromQL notation, `metric{label="value",...}`, on one line:
        quotes, backslashes and control characters escaped, as PromQL writes them."""
        labels = {k: v for k, v in self.labels.items() if k != "__name__"}
        inner = ",".join(f"{_escaped(k)}={_quoted(v)}" for k, v in sorted(labels.items()))
        return f"{_escaped(self.labels.get('__name__', ''))}{{{inner}}}"

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        """The labels without `__name__`: what matches a limit series to its count."""
        return tuple(sorted((k, v) for k, v in self.labels.items() if k != "__name__"))


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _escaped(text: str) -> str:
    return _quoted(text)[1:-1]


def limit_query_for(query: str) -> str | None:
    """`process_max_fds{...}` for a selector of `process_open_fds{...}`, else None."""
    m = _OPEN_FDS.match(query)
    return None if m is None else f"process_max_fds{m.group(1) or ''}"


def parse_range_result(doc: Any, source: str) -> list[PromSeries]:
    """The series of a range query's JSON: the API's `{"status", "data"}` response or
    its bare `result` array. Non-finite samples (NaN, the staleness marker) are left
    out; a sample below 0 is an error, as no fd count is.

    Raises:
        UsageError: an error response, an instant (vector) result, or bad JSON shape.
    """
    if isinstance(doc, dict):
        if doc.get("status") == "error":
            what = " ".join(str(doc.get("error", "?")).split())  # on one line
            raise UsageError(
                f"{source}: Prometheus answered an error: {what}"
                f" ({_escaped(str(doc.get('errorType', 'no type')))})"
            )
        data = doc.get("data")
        if not isinstance(data, dict) or "result" not in data:
            raise UsageError(
                f"{source}: not a Prometheus query_range response (no data.result)"
            )
        kind = data.get("resultType")
        if kind != "matrix":
            raise UsageError(
                f"{source}: the result is a {_escaped(str(kind))}, not a range of samples: "
                "save the answer"
                " of /api/v1/query_range (or `promtool query range -o json`), not of an"
                " instant query"
            )
        result = data["result"]
    else:
        result = doc
    if not isinstance(result, list):
        raise UsageError(f"{source}: expected a list of series, got {type(result).__name__}")
    out: list[PromSeries] = []
    for i, item in enumerate(result):
        if not isinstance(item, dict) or not isinstance(item.get("values"), list):
            what = "an instant sample ('value')" if isinstance(item, dict) else "not an object"
            raise UsageError(
                f"{source}: series {i} has no 'values' ({what}): use a range query"
            )
        labels = item.get("metric", {})
        if not isinstance(labels, dict):
            raise UsageError(f"{source}: series {i}: 'metric' is not an object")
        out.append(_series({str(k): str(v) for k, v in labels.items()}, item["values"], source))
    return out


def _series(labels: dict[str, str], values: Sequence[Any], source: str) -> PromSeries:
    s = PromSeries(labels, [], [])
    for pair in values:
        try:
            t, raw = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError, KeyError, OverflowError):
            shown = repr(pair) if len(repr(pair)) <= 60 else repr(pair)[:57] + "..."
            raise UsageError(
                f"{source}: {s.name}: sample {shown} is not [timestamp, \"value\"]"
            ) from None
        if not math.isfinite(raw):
            continue
        if raw < 0:
            raise UsageError(f"{source}: {s.name}: value {raw:g} at {t:.0f} is below 0")
        if s.times and t < s.times[-1]:
            raise UsageError(f"{source}: {s.name}: timestamp {t:.0f} goes back in time")
        s.times.append(t)
        s.values.append(raw)
    return s


def load_range_json(text: str, source: str) -> list[PromSeries]:
    """`parse_range_result` of a saved answer's text."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{source}:{err.lineno}: not JSON: {err.msg}") from err
    return parse_range_result(doc, source)


def step_for(seconds: float, step: float) -> float:
    """`step`, or the smallest step (in whole milliseconds, Prometheus' resolution)
    that keeps a range of `seconds` under MAX_POINTS points per series."""
    return max(step, math.ceil(seconds / (MAX_POINTS - 1) * 1000) / 1000)


def parse_headers(given: Sequence[str], option: str = "--header") -> dict[str, str]:
    """`NAME:VALUE` strings (as curl and promtool take them) -> headers.

    Raises:
        UsageError: one without a colon, or with a name that is empty or has spaces
            (its value is not repeated: it may be a secret).
    """
    out = {}
    for h in given:
        name, sep, value = h.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise UsageError(f"{option} {h.split(':')[0][:20]!r}...: expected NAME:VALUE")
        out[name.strip()] = value.strip()
    return out


def check_url(url: str, option: str = "the Prometheus URL") -> None:
    """Raise UsageError, naming `option`, unless `url` is http(s)."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{option} must be an http(s) URL, got {shown_url(url)!r}")


def shown_url(url: str) -> str:
    """`url` fit to print: a password in it (`http://user:pass@host`) becomes `***`."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _credentials(url: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """`http://user:pass@host/` -> the URL without them and a Basic Authorization
    header (unless one is given already): urllib does not send URL credentials."""
    parts = urllib.parse.urlsplit(url)
    out = dict(headers)
    if parts.username is None:
        return url, out
    if not any(k.lower() == "authorization" for k in out):
        user = urllib.parse.unquote(parts.username)
        pair = f"{user}:{urllib.parse.unquote(parts.password or '')}"
        out["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), out


def query_range(
    url: str,
    query: str,
    *,
    start: float,
    end: float,
    step: float,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> list[PromSeries]:
    """Run `query` over [start, end] every `step` seconds on the Prometheus at `url`.

    Each value is the series' latest sample at that instant (within Prometheus'
    5-minute look-back): the series resampled on the step.

    Raises:
        UsageError: a URL that is not http(s), a server that cannot be reached or
            does not answer as Prometheus does, or a query it rejects (its message).
    """
    params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    return parse_range_result(_get(url, "query_range", params, query, timeout, headers), url)


def query_raw(
    url: str,
    selector: str,
    *,
    start: float,
    end: float,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> list[PromSeries]:
    """The samples `selector` (a metric and labels) stored in [start, end], with the
    times they were scraped at: `selector[Ns]` at `end`. Unlike a range query, nothing
    is carried forward, so an instant before a series' first sample has no value
    (a previous process's last count does not fill it).

    Raises:
        UsageError: as `query_range`; also for a query that is not a selector.
    """
    span = max(1, math.ceil(end - start))
    query = f"{selector}[{span}s]"
    params = {"query": query, "time": f"{end:.3f}"}
    found = parse_range_result(_get(url, "query", params, query, timeout, headers), url)
    return [
        PromSeries(s.labels, *_within(s.times, s.values, start)) for s in found
    ]


def _within(times: list[float], values: list[float], start: float) -> tuple[list[float], ...]:
    keep = [i for i, t in enumerate(times) if t >= start]
    return [times[i] for i in keep], [values[i] for i in keep]


def _get(
    url: str,
    endpoint: str,
    params: Mapping[str, str],
    query: str,
    timeout: float,
    headers: Mapping[str, str] | None,
) -> Any:
    """GET /api/v1/`endpoint` with `params`: the answer's JSON (see `query_range`)."""
    check_url(url)
    url, sent = _credentials(url, headers or {})
    full = f"{url.rstrip('/')}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(full, headers={"Accept": "application/json", **sent})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as err:
        # Prometheus answers a bad query with 400/422 and a JSON error body.
        body = err.read()
        err.close()
        if err.code in (401, 403):
            raise UsageError(
                f"{url}: HTTP {err.code} {err.reason}: it wants credentials"
                " (--header 'Authorization: ...')"
            ) from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise UsageError(f"{url}: HTTP {err.code} {err.reason} (is it Prometheus?)") from None
        if isinstance(doc, dict) and doc.get("status") == "error":
            what = " ".join(str(doc.get("error", "?")).split())  # on one line
            raise UsageError(f"Prometheus at {url} rejected {query!r}: {what}") from None
        raise UsageError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UsageError(f"cannot reach Prometheus at {url}: {reason}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise UsageError(f"{url}: the answer is not JSON (is it Prometheus?)") from None


def match_limits(
    series: Sequence[PromSeries], limits: Sequence[PromSeries]
) -> list[int | None]:
    """Each series' soft limit: the last value of the limit series with the same labels
    (but `__name__`; one series and one limit are each other's whatever their labels);
    None where there is none."""
    by_key = {s.key: s for s in limits if s.values}
    only = next(iter(by_key.values())) if len(by_key) == 1 and len(series) == 1 else None
    out: list[int | None] = []
    for s in series:
        lim = by_key.get(s.key, only)
        out.append(int(lim.values[-1]) if lim is not None and lim.values[-1] >= 1 else None)
    return out


def _judge_one(args: tuple[PromSeries, int | None, DetectorConfig]) -> LeakVerdict:
    s, limit, config = args
    return analyze(s.times, s.values, limit=limit, config=config)


def judge_all(
    series: Sequence[PromSeries],
    limits: Sequence[int | None],
    config: DetectorConfig,
    *,
    jobs: int = 1,
) -> list[LeakVerdict]:
    """The detector's verdict on each series (against its limit), replayed offline;
    over `jobs` worker processes when there are more series than that (a week at one
    sample a minute takes the detector about 0.4 s of one core)."""
    work = [(s, lim, config) for s, lim in zip(series, limits, strict=True)]
    if jobs <= 1 or len(work) <= 1:
        return [_judge_one(w) for w in work]
    with ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
        return list(pool.map(_judge_one, work, chunksize=max(1, len(work) // (4 * jobs))))


_Samples = list[tuple[float, float]]

DEFAULT_HISTORY_QUERY = 'process_open_fds{pid="{pid}"}'
"""Which series holds a process's past: fdguard export's own, by PID. `{pid}` and
`{comm}` are replaced by the process's."""


def history_source(
    url: str,
    template: str = DEFAULT_HISTORY_QUERY,
    *,
    headers: Mapping[str, str] | None = None,
) -> Callable[[int, str, float, float], dict[str, _Samples]]:
    """A `fdguard.watch.HistorySource` reading a process's past from a Prometheus:
    the samples stored for the selector `template` (with `{pid}` and `{comm}`
    filled in) over the span asked, as scraped (`query_raw`: a range query would
    fill the instants before the process's first scrape with whatever the series
    held before, a previous process's count). It must match one series; none or
    several is an error (a UsageError the watch reports).

    With the default template (fdguard export's own series) the per-kind series
    that fdguard export publishes beside it are read too (`fdguard_open_fds_by_kind`
    and `fdguard_tcp_sockets_by_state` of that PID), so the per-kind detectors judge
    at once as well (a CLOSE-WAIT leak under a flat total)."""

    def raw(query: str, since: float, until: float) -> list[PromSeries]:
        return query_raw(url, query, start=since, end=until, headers=headers)

    def fetch(pid: int, comm: str, since: float, until: float) -> dict[str, _Samples]:
        query = template.replace("{pid}", str(pid)).replace("{comm}", comm)
        found = raw(query, since, until)
        if len(found) != 1:
            raise UsageError(
                f"history: {query!r} matched {len(found)} series on {shown_url(url)}; a"
                " process's past is one series (--history-query)"
            )
        out = {"": list(zip(found[0].times, found[0].values, strict=True))}
        if template != DEFAULT_HISTORY_QUERY:
            return out
        for metric, label, prefix in (
            ("fdguard_open_fds_by_kind", "kind", ""),
            ("fdguard_tcp_sockets_by_state", "state", "tcp:"),
        ):
            for s in raw(f'{metric}{{pid="{pid}"}}', since, until):
                if s.labels.get(label):
                    out[prefix + s.labels[label]] = list(zip(s.times, s.values, strict=True))
        return out

    return fetch
