"""Render a `Report` as Markdown, self-contained HTML, and a GitHub issue body with attachments.

The report is first laid out as a list of blocks (headings, paragraphs,
tables, code, images, checklists); each renderer walks the same blocks, so
the Markdown, the HTML and the GitHub body always say the same thing.

Sections, in the order a maintainer reads them (and as the issue asks):
libuv version and runtime, platform, observed behaviour, attribution,
reproducer, expected behaviour, error logs, what is still missing, and what
was redacted. A section with no data says so and points at the checklist:
nothing is ever filled in with made-up content.

GitHub caps an issue body at 65,536 characters and does not render data
URIs: `--format github` writes `issue.md` within a budget below that cap, the
largest tables and code blocks moved to `attachments/` one by one until it
fits, and the charts as files to drag into the issue.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fdguard.report.charts import Chart, draw
from fdguard.report.collect import Growth, Report
from fdguard.report.redact import RedactionSummary

GITHUB_BODY_LIMIT = 65_536
# Room left under GitHub's cap for what the reporter adds when pasting.
GITHUB_BUDGET = 60_000

SECTIONS = (
    "libuv version and runtime",
    "Platform",
    "Observed behaviour",
    "Attribution",
    "Reproducer",
    "Expected behaviour",
    "Error logs",
    "Still missing from this report",
    "Redaction",
)


# -- blocks ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Para:
    text: str  # `code` spans and **bold** are the only markup


@dataclass(frozen=True, slots=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Checklist:
    items: tuple[tuple[bool, str], ...]


@dataclass(frozen=True, slots=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    name: str = ""  # attachment name when moved out of a GitHub body


@dataclass(frozen=True, slots=True)
class Code:
    text: str
    lang: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class Image:
    alt: str
    png: Path
    svg: Path | None = None


@dataclass(frozen=True, slots=True)
class Attached:
    """A block moved to an attachment file (GitHub body only)."""

    name: str
    what: str


Block = Heading | Para | Bullets | Checklist | Table | Code | Image | Attached


@dataclass(frozen=True, slots=True)
class Written:
    """The files a report was written to."""

    markdown: Path
    html: Path
    charts: tuple[Chart, ...]
    github: Path | None = None
    attachments: tuple[Path, ...] = field(default=())


# -- formatting helpers ---------------------------------------------------------------


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _growth_line(g: Growth) -> str:
    rate = f"{g.rate_per_hour:+.0f} fds/hour" if g.rate_per_hour is not None else "rate unknown"
    eta = (f"soft limit reached in about {_human(g.eta_seconds)}"
           if g.eta_seconds is not None else "no ETA")
    extra = f", confidence {g.confidence:.2f}" if g.confidence is not None else ""
    when = f", first called at {_utc(g.detected_at)}" if g.detected_at and g.detected_at > 1e9 \
        else ""
    return f"{rate}; {eta} ({g.source}{extra}{when})"


def at_a_glance(report: Report) -> list[str]:
    """The few lines a maintainer triaging many reports reads first (each from a
    section below; none when its source is missing)."""
    out = []
    rt = report.runtime
    if rt is not None:
        extra = ", ".join(f"{k} {v}" for k, v in sorted(rt.versions.items()))
        osname = report.platform.os_name or "unknown OS"
        out.append(f"libuv {rt.libuv_version or 'unknown'} in {rt.name}"
                   + (f" ({extra})" if extra else "")
                   + f"; {osname}, kernel {report.platform.facts.kernel_release or '?'}, "
                   f"{report.platform.facts.arch or '?'}.")
    obs = report.observed
    if obs is not None:
        growth = obs.detector or obs.fit
        kinds = ", ".join(f"{k} {n}" for k, n in list(obs.worst_by_kind.items())[:3])
        out.append(f"{obs.first_count} -> {obs.peak_count} open fds"
                   + (f" (soft limit {obs.soft_limit})" if obs.soft_limit else "")
                   + (f"; {growth.rate_per_hour:+.0f} fds/hour" if growth and
                      growth.rate_per_hour is not None else "")
                   + (f"; most are {kinds}" if kinds else "") + ".")
    tr = report.trace
    if tr is not None and tr.groups:
        g = tr.groups[0]
        out.append(f"Biggest group of leaked fds: {g.count} from {g.syscall or '?'}"
                   + (f" in {g.libuv_function}" if g.libuv_function else "")
                   + f"; verdict {g.verdict}.")
    k = report.known
    if k is not None:
        # Only a fitting signature is worth the top of the report; weak matches
        # stay in the table below, where their evidence is.
        best = next((c for c in k.candidates
                     if str(c.get("assessment", "")).startswith("hypothesis")), None)
        if best is not None:
            out.append(f"Known libuv bug that fits: {best['id']} (fixed in "
                       f"{best['fixed_in']}).")
        elif k.carried and k.candidates:
            out.append(f"None of the {len(k.carried)} known libuv fd bugs {k.version} "
                       "carries fits what grows.")
        elif not k.carried:
            out.append(f"libuv {k.version} carries no known fd bug.")
    return out


def _missing(what: str) -> Para:
    return Para(f"Not available: {what}. See the checklist at the end.")


# -- layout ----------------------------------------------------------------------


def layout(report: Report, charts: Sequence[Chart]) -> list[Block]:
    """The report as blocks, sections in the order of `SECTIONS`."""
    b: list[Block] = [Heading(1, report.title)]
    t = report.target
    intro = [f"Generated by fdguard on {_utc(report.generated_at)}."]
    if t.pid is not None:
        intro.append(f"Target: pid {t.pid}" + (" (running)" if t.alive else " (not running)")
                     + (f", label `{t.label}`" if t.label else "") + ".")
    if t.command:
        intro.append("Command: `" + " ".join(t.command)[:300] + "`.")
    b.append(Para(" ".join(intro)))
    glance = at_a_glance(report)
    if glance:
        b.append(Para("At a glance:"))
        b.append(Bullets(tuple(glance)))

    # 1. libuv version and runtime
    b.append(Heading(2, SECTIONS[0]))
    rt = report.runtime
    if rt is None:
        b.append(_missing("no libuv runtime was detected (process not running, or not on "
                          "libuv)"))
    else:
        rows = [("runtime", rt.name or "unknown"),
                ("libuv version", rt.libuv_version or "unknown")]
        rows += [(f"{k} version", v) for k, v in sorted(rt.versions.items())]
        rows += [("libuv linkage", rt.linkage or "unknown"), ("found in", rt.path or "?"),
                 ("how it was read", rt.source)]
        b.append(Table(("", ""), tuple(rows)))
        for n in rt.notes:
            b.append(Para(f"Note: {n}"))
    k = report.known
    if k is not None:
        b.append(Heading(3, f"Known libuv fd-leak fixes after {k.version}"))
        if not k.carried:
            b.append(Para(f"fdguard's base of known libuv fd bugs lists none that libuv "
                          f"{k.version} carries on this platform."))
        else:
            b.append(Para(f"libuv {k.version} carries {len(k.carried)} known fd bug(s) fixed "
                          f"in later releases"
                          + (f" (all fixed by {k.upgrade_to})" if k.upgrade_to else "")
                          + ". Best matches for what was observed first:"))
            cand = {c["id"]: c for c in k.candidates}
            rows_k = []
            for bug in sorted(k.carried, key=lambda x: (x["id"] not in cand, x["id"]))[:15]:
                c = cand.get(bug["id"])
                src = bug.get("source") or {}
                link = ""
                if src.get("issue_url"):
                    link = f"[issue]({src['issue_url']})"
                elif src.get("commit"):
                    commit = str(src["commit"])
                    link = f"[{commit[:10]}](https://github.com/libuv/libuv/commit/{commit})"
                rows_k.append((bug["id"], bug["title"], bug["fixed_in"],
                               c["assessment"] if c else "signature not weighed", link))
            b.append(Table(("id", "bug", "fixed in", "fit with what was seen", "source"),
                           tuple(rows_k), name="known-fixes.md"))

    # 2. Platform
    b.append(Heading(2, SECTIONS[1]))
    b.append(Table(("", ""), tuple(report.platform.rows())))

    # 3. Observed behaviour
    b.append(Heading(2, SECTIONS[2]))
    obs = report.observed
    if obs is None:
        b.append(_missing("no recorded fd series"))
    else:
        png = next((c for c in charts if c.fmt == "png"), None)
        svg = next((c for c in charts if c.fmt == "svg"), None)
        if png is not None:
            b.append(Image("open fds by kind against the soft limit", png.path,
                           svg.path if svg else None))
        span = obs.last_t - obs.first_t
        facts = [
            f"{obs.samples} samples over {_human(span)}, {_utc(obs.first_t)} to "
            f"{_utc(obs.last_t)}.",
            f"Open fds: {obs.first_count} at the first sample, {obs.last_count} at the last, "
            f"peak {obs.peak_count} at {_utc(obs.peak_t)}"
            + (f" ({100 * obs.peak_count / obs.soft_limit:.0f}% of the soft limit "
               f"{obs.soft_limit})" if obs.soft_limit else "") + ".",
        ]
        if obs.detector is not None:
            facts.append("Leak verdict: " + _growth_line(obs.detector) + ".")
        else:
            facts.append("Leak verdict: the leak detector did not fire on this series.")
        if obs.fit is not None:
            facts.append("Growth over the whole series: " + _growth_line(obs.fit) + ".")
        if obs.restarts:
            facts.append("Restarts: " + ", ".join(
                f"pid {a} -> {c} at {_utc(x)}" for x, a, c in obs.restarts) + ".")
        b.append(Bullets(tuple(facts)))
        if report.mitigation:
            b.append(Para("Containment meanwhile:"))
            b.append(Bullets(report.mitigation))
        if obs.worst_by_kind:
            b.append(Para(f"Breakdown at the worst recorded moment ({_utc(obs.worst_t or 0)}), "
                          "by kind" + (" and TCP state" if obs.worst_by_state else "") + ":"))
            rows_w = [(kind, str(n)) for kind, n in obs.worst_by_kind.items()]
            rows_w += [(f"tcp {st}", str(n)) for st, n in obs.worst_by_state.items()]
            b.append(Table(("kind / state", "fds"), tuple(rows_w)))
        if obs.alerts:
            b.append(Para("Alerts recorded:"))
            b.append(Table(("time", "alert", "state", "message"),
                           tuple((_utc(a.t), a.rule, a.state, report.redactor.redact(a.message))
                                 for a in obs.alerts[:40]), name="alerts.md"))

    # 4. Attribution
    b.append(Heading(2, SECTIONS[3]))
    ex = report.explain
    if ex is None:
        b.append(_missing("no `explain` verdicts"))
    else:
        s = ex.summary
        b.append(Para(
            f"`fdguard explain`: {s.get('actual', '?')} fds, of which "
            f"{s.get('expected', '?')} are held by what libuv and the application say they "
            f"hold and {s.get('unexplained', '?')} are unexplained; confidence "
            f"{s.get('confidence', '?')}."
            + (f" Handle view: {ex.handle_view}." if ex.handle_view else "")
            + " A `?` marks a verdict that rests on heuristics, not on a handle view."))
        if s.get("basis"):
            b.append(Bullets(tuple(f"basis: {x}" for x in s["basis"])))
        b.append(Table(("verdict", "kind", "state", "fds", "evidence (most common)",
                        "e.g. fd"),
                       tuple((v + ("" if certain else "?"), kind, state, str(n), evid, str(fd))
                             for v, kind, state, n, evid, fd, certain in ex.rows),
                       name="explain-verdicts.md"))
        for n in ex.notes:
            b.append(Para(f"Note: {n}"))
    tr = report.trace
    b.append(Heading(3, "Birth certificates (trace)"))
    if tr is None:
        b.append(_missing("no `trace` of the leaking fds"))
    else:
        b.append(Para(
            f"`fdguard trace` ({tr.mode}, {tr.window_s:.1f} s window, "
            + ("with creation stacks" if tr.stacks else "WITHOUT creation stacks")
            + f"): {tr.created} fds created, {tr.closed} closed, {tr.open_at_end} still open "
            "at the end of the window. Frames are innermost first; **libuv** frames are in "
            "bold."))
        for i, g in enumerate(tr.groups[:8], start=1):
            kinds = ", ".join(f"{k} x{n}" for k, n in g.kinds.items())
            head = (f"{i}) {g.count} fd(s) ({kinds}) from {g.syscall or 'an unseen syscall'}"
                    + (f" in {g.libuv_function}" if g.libuv_function else "")
                    + f" -- verdict {g.verdict}: {g.verdict_text}")
            b.append(Para(head))
            if g.after:
                b.append(Para("then: " + ", ".join(f"{k} x{n}" for k, n in g.after.items())))
            if g.frames:
                lines = []
                for label, origin in g.frames[:24]:
                    mark = ">> " if origin == "libuv" else "   "
                    lines.append(f"{mark}{label}  [{origin}]")
                b.append(Code("\n".join(lines), "text", name=f"trace-group-{i}.txt"))
        if len(tr.groups) > 8:
            b.append(Para(f"... and {len(tr.groups) - 8} more group(s)."))
        for w in tr.warnings:
            b.append(Para(f"Note: {w}"))
    if report.stacks is not None:
        b.append(Heading(3, "Live thread stacks (gdb)"))
        b.append(Code(report.stacks, "text", name="thread-stacks.txt"))

    # 5. Reproducer
    b.append(Heading(2, SECTIONS[4]))
    rp = report.reproducer
    if rp is not None:
        b.append(Para(f"From {rp.source}."))
        for f in rp.files:
            b.append(Para(f"`{f.name}`:"))
            b.append(Code(f.text, f.language, name=f.name))
        if rp.build:
            b.append(Para("Build:"))
            b.append(Code("\n".join(rp.build), "sh"))
        if rp.run:
            b.append(Para("Run:"))
            b.append(Code("\n".join(rp.run), "sh"))
        for n in rp.notes:
            b.append(Para(n))
    if report.lab_runs:
        b.append(Para("`fdguard lab run` (the scenario in isolation, per libuv build):"))
        b.append(Table(("scenario", "libuv", "version", "verdict", "growth", "leaked kinds"),
                       tuple((x["scenario"], x["libuv"], x["version"], x["verdict"],
                              str(x["growth"]) + (f" over {x['iterations']} iterations"
                                                  if x.get("iterations") else ""),
                              ", ".join(f"{k} {v:+g}" for k, v in x["growth_by_kind"].items()))
                             for x in report.lab_runs), name="lab-runs.md"))
    st = report.stress
    if st is not None:
        b.append(Para(f"Stress scenario `{st.scenario}` (`fdguard stress`): "
                      + (f"leaks under {', '.join(st.leaking)}." if st.leaking
                         else "no configuration leaked.")))
        b.append(Table(("configuration", "faults", "verdict", "deltas per round",
                        "growth by kind"),
                       tuple((c["name"], c["faults"], ("LEAK" if c["leak"] else
                                                       "FAILED" if c["failed"] else "ok")
                              + f": {c['reason']}", " ".join(map(str, c["deltas"])),
                              ", ".join(f"{k} {v:+g}" for k, v in c["growth_by_kind"].items()))
                             for c in st.configs), name="stress.md"))
    if rp is None and st is None and not report.lab_runs:
        b.append(_missing("no `lab repro` reproducer and no stress scenario"))

    # 6. Expected behaviour
    b.append(Heading(2, SECTIONS[5]))
    b.append(Para(report.expected))
    if obs is not None:
        b.append(Para(
            f"Observed instead: the count went from {obs.first_count} to {obs.peak_count}"
            + (f" against a soft limit of {obs.soft_limit}" if obs.soft_limit else "")
            + (", and the leak detector called it a leak." if obs.detector else ".")))

    # 7. Error logs
    b.append(Heading(2, SECTIONS[6]))
    if not report.logs:
        b.append(_missing("no error logs"))
    else:
        text = "\n".join(
            f"[{ln.source}] {ln.text}" + (f"  (x{ln.repeats})" if ln.repeats > 1 else "")
            for ln in report.logs)
        b.append(Code(text, "text", name="error-logs.txt"))

    # 8. Checklist
    b.append(Heading(2, SECTIONS[7]))
    if not report.missing:
        b.append(Para("Nothing: every part of the report is present."))
    b.append(Checklist(tuple(
        (c.present, c.what + ("" if c.present else f" -- {c.how}"))
        for c in report.checklist)))

    # 9. Redaction
    b.append(Heading(2, SECTIONS[8]))
    b.append(_redaction_para(report.redaction))
    return b


def _redaction_para(red: RedactionSummary) -> Para:
    return Para(
        "Environment variables are never included. Command lines, paths, hostnames, "
        "addresses, logs and stacks were redacted before writing"
        + (": " + ", ".join(f"{n} {kind}" for kind, n in red.counts.items()) + "."
           if red.total else "; nothing needed redacting."))


# -- Markdown ---------------------------------------------------------------------------


def _md_text(text: str) -> str:
    """Text outside `code` spans with < as an entity: GitHub (and most Markdown
    renderers) would take a placeholder such as <redacted> or a target's own
    <tag> for HTML and drop it."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) >= 2
                   else p.replace("<", "&lt;") for p in parts)


def _md_cell(text: str) -> str:
    return _md_text(text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " "))


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    return "`" * max(3, longest + 1)


def to_markdown(blocks: Sequence[Block], *, image_base: Path | None = None) -> str:
    out: list[str] = []
    for blk in blocks:
        if isinstance(blk, Heading):
            out.append("#" * blk.level + " " + _md_text(blk.text.replace("\n", " ")))
        elif isinstance(blk, Para):
            out.append(_md_text(blk.text))
        elif isinstance(blk, Bullets):
            out.append("\n".join(f"- {_md_text(x)}" for x in blk.items))
        elif isinstance(blk, Checklist):
            out.append("\n".join(f"- [{'x' if ok else ' '}] {_md_text(x)}"
                                 for ok, x in blk.items))
        elif isinstance(blk, Table):
            head = blk.headers if any(blk.headers) else ("fact", "value")
            lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |",
                     "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in blk.rows]
            out.append("\n".join(lines))
        elif isinstance(blk, Code):
            fence = _fence(blk.text)
            out.append(f"{fence}{blk.lang}\n{blk.text.rstrip(chr(10))}\n{fence}")
        elif isinstance(blk, Image):
            png = blk.png.name if image_base is None else str(blk.png.relative_to(image_base))
            line = f"![{blk.alt}]({png})"
            if blk.svg is not None:
                line += f"\n\n(vector version: [{blk.svg.name}]({blk.svg.name}))"
            out.append(line)
        elif isinstance(blk, Attached):
            out.append(f"*{blk.what}: attached as `{blk.name}`.*")
    return "\n\n".join(out) + "\n"


# -- HTML --------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1f2328;line-height:1.5}
h1{font-size:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}
h2{font-size:1.3em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #d0d7de;padding:4px 10px;vertical-align:top;text-align:left}
th{background:#f6f8fa}
pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:.85em;line-height:1.35}
code{background:#eff1f3;padding:1px 4px;border-radius:4px;font-size:.9em}
pre code{background:none;padding:0}
img{max-width:100%;border:1px solid #d0d7de}
ul.check{list-style:none;padding-left:1em}
.ok{color:#1a7f37}.no{color:#cf222e}
"""


# Links only to libuv's own repository (the known-fixes table): text from the
# target never becomes a link.
_LINK = re.compile(r"\[([^\]]+)\]\((https://github\.com/libuv/libuv/[^)\s]+)\)")


def _inline(text: str) -> str:
    """`code`, **bold** and [text](https://...) links; everything else escaped."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for p in parts:
        if len(p) >= 2 and p.startswith("`") and p.endswith("`"):
            out.append(f"<code>{html.escape(p[1:-1])}</code>")
        else:
            esc = html.escape(p, quote=False)
            esc = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc)
            out.append(_LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">'
                                           f"{m.group(1)}</a>", esc))
    return "".join(out)


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(blocks: Sequence[Block], title: str) -> str:
    body: list[str] = []
    for blk in blocks:
        if isinstance(blk, Heading):
            body.append(f"<h{blk.level}>{html.escape(blk.text)}</h{blk.level}>")
        elif isinstance(blk, Para):
            body.append(f"<p>{_inline(blk.text)}</p>")
        elif isinstance(blk, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in blk.items) + "</ul>")
        elif isinstance(blk, Checklist):
            body.append('<ul class="check">' + "".join(
                f'<li><span class="{"ok" if ok else "no"}">{"&#9745;" if ok else "&#9744;"}'
                f"</span> {_inline(x)}</li>" for ok, x in blk.items) + "</ul>")
        elif isinstance(blk, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in blk.headers) \
                if any(blk.headers) else ""
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                for row in blk.rows)
            body.append(f"<table>{'<tr>' + head + '</tr>' if head else ''}{rows}</table>")
        elif isinstance(blk, Code):
            text = html.escape(blk.text)
            # libuv frames (marked ">> " by the layout) stand out in bold.
            text = re.sub(r"^(&gt;&gt; .*)$", r"<b>\1</b>", text, flags=re.M)
            body.append(f"<pre><code>{text}</code></pre>")
        elif isinstance(blk, Image):
            img = f'<img alt="{html.escape(blk.alt)}" src="{_data_uri(blk.png, "image/png")}">'
            if blk.svg is not None:
                img += (f'<p><a download="{html.escape(blk.svg.name)}" '
                        f'href="{_data_uri(blk.svg, "image/svg+xml")}">vector version (SVG)'
                        "</a></p>")
            body.append(img)
        elif isinstance(blk, Attached):
            body.append(f"<p><i>{html.escape(blk.what)}: attached as "
                        f"<code>{html.escape(blk.name)}</code>.</i></p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# -- GitHub -----------------------------------------------------------------------------


def _attachment_text(blk: Table | Code) -> str:
    if isinstance(blk, Code):
        return blk.text + "\n"
    return to_markdown([blk])


def fit_github(blocks: Sequence[Block], budget: int = GITHUB_BUDGET
               ) -> tuple[str, list[tuple[str, str]]]:
    """The GitHub body within `budget` characters, and the (name, text) attachments.

    The largest tables and code blocks move out first; if the body is still too
    long (a huge title or checklist), it is cut with a pointer to report.md.
    """
    work: list[Block] = []
    for blk in blocks:
        if isinstance(blk, Image):
            work.append(Para(f"**Chart:** drag `{blk.png.name}` (in the report directory) "
                             "here; it shows " + blk.alt + "."))
        else:
            work.append(blk)
    attachments: list[tuple[str, str]] = []
    used: set[str] = set()
    body = to_markdown(work)
    while len(body) > budget:
        movable = [(len(_attachment_text(x)), i) for i, x in enumerate(work)
                   if isinstance(x, Table | Code)]
        if not movable:
            break
        _, i = max(movable)
        blk = work[i]
        assert isinstance(blk, Table | Code)
        name = blk.name or f"part-{i}.txt"
        base, n = name, 2
        while name in used:
            stem, dot, ext = base.rpartition(".")
            name = f"{stem}-{n}.{ext}" if dot else f"{base}-{n}"
            n += 1
        used.add(name)
        attachments.append((name, _attachment_text(blk)))
        what = "table" if isinstance(blk, Table) else "text"
        work[i] = Attached(name, f"Long {what} ({len(_attachment_text(blk))} characters)")
        body = to_markdown(work)
    if len(body) > budget:
        cut = "\n\n*(cut to fit GitHub's limit: the full report is in report.md)*\n"
        body = body[: budget - len(cut)] + cut
    return body, attachments


# -- JSON -------------------------------------------------------------------------------------


def report_json(report: Report) -> dict[str, Any]:
    """The report's facts for tools (triage bots, dashboards): `report.json`."""
    obs = report.observed

    def growth(g: Growth | None) -> dict[str, Any] | None:
        if g is None:
            return None
        return {"rate_per_hour": g.rate_per_hour, "eta_seconds": g.eta_seconds,
                "confidence": g.confidence, "detected_at": g.detected_at, "source": g.source}

    rt = report.runtime
    doc: dict[str, Any] = {
        "title": report.title,
        "generated_at": report.generated_at,
        "target": {"pid": report.target.pid, "command": list(report.target.command),
                   "label": report.target.label, "alive": report.target.alive,
                   "pids": list(report.target.pids)},
        "runtime": None if rt is None else {
            "name": rt.name, "libuv_version": rt.libuv_version, "linkage": rt.linkage,
            "path": rt.path, "versions": dict(rt.versions)},
        "known": None if report.known is None else {
            "version": report.known.version,
            "carried": [b["id"] for b in report.known.carried],
            "upgrade_to": report.known.upgrade_to,
            "candidates": [{"id": c["id"], "score": c["score"], "assessment": c["assessment"]}
                           for c in report.known.candidates]},
        "platform": dict(report.platform.rows()),
        "observed": None if obs is None else {
            "samples": obs.samples, "first_t": obs.first_t, "last_t": obs.last_t,
            "first_count": obs.first_count, "last_count": obs.last_count,
            "peak_count": obs.peak_count, "peak_t": obs.peak_t, "soft_limit": obs.soft_limit,
            "detector": growth(obs.detector), "fit": growth(obs.fit),
            "worst_t": obs.worst_t, "worst_by_kind": obs.worst_by_kind,
            "worst_by_tcp_state": obs.worst_by_state,
            "alerts": [{"t": a.t, "rule": a.rule, "state": a.state} for a in obs.alerts],
            "restarts": [{"t": t, "old_pid": a, "new_pid": b} for t, a, b in obs.restarts]},
        "explain": None if report.explain is None else {
            "summary": report.explain.summary,
            "groups": [{"verdict": v, "kind": k, "state": st or None, "count": n,
                        "certain": c} for v, k, st, n, _e, _fd, c in report.explain.rows]},
        "trace": None if report.trace is None else {
            "mode": report.trace.mode, "window_s": report.trace.window_s,
            "created": report.trace.created, "closed": report.trace.closed,
            "open_at_end": report.trace.open_at_end,
            "groups": [{"count": g.count, "kinds": g.kinds, "syscall": g.syscall,
                        "libuv_function": g.libuv_function, "verdict": g.verdict,
                        "frames": [{"label": lbl, "origin": o} for lbl, o in g.frames]}
                       for g in report.trace.groups]},
        "reproducer": None if report.reproducer is None else {
            "source": report.reproducer.source,
            "files": [f.name for f in report.reproducer.files],
            "build": list(report.reproducer.build), "run": list(report.reproducer.run)},
        "lab_runs": list(report.lab_runs),
        "stress": None if report.stress is None else {
            "scenario": report.stress.scenario, "leaking": list(report.stress.leaking)},
        "mitigation": list(report.mitigation),
        "error_log_lines": len(report.logs),
        "checklist": [{"what": c.what, "present": c.present} for c in report.checklist],
        "redacted": report.redactor.summary().to_json(),
    }
    scrubbed: dict[str, Any] = _scrub_json(doc, report)
    return scrubbed


def _scrub_json(value: Any, report: Report) -> Any:
    if isinstance(value, str):
        return report.redactor.redact_secrets(value)
    if isinstance(value, dict):
        return {k: _scrub_json(v, report) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_json(v, report) for v in value]
    return value


# -- the facade ------------------------------------------------------------------------------


def write_report(report: Report, out_dir: str | Path, *, github: bool = False) -> Written:
    """Write report.md, report.html (self-contained), report.json, the charts (PNG and
    SVG) and, with `github`, issue.md and attachments/ into `out_dir` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charts: list[Chart] = []
    if report.observed is not None:
        pids = report.target.pids or ((report.target.pid,) if report.target.pid else ())
        title = "open fds" + (f" of pid{'s' if len(pids) > 1 else ''} "
                              + ", ".join(map(str, pids)) if pids else "")
        if report.runtime is not None and report.runtime.name:
            title += f" ({report.runtime.name}, libuv {report.runtime.libuv_version or '?'})"
        charts = draw(report.observed.data, [out / "fd-series.png", out / "fd-series.svg"],
                      title=title)
    blocks = layout(report, charts)
    # Last line of defence: the secret patterns over every text block (fdguard's
    # own text included, where they never match); counts join the summary.
    blocks = [_scrub(b, report) for b in blocks[:-1]]
    blocks.append(_redaction_para(report.redactor.summary()))
    md = to_markdown(blocks)
    md_path = out / "report.md"
    md_path.write_text(md, encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(to_html(blocks, report.title), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report_json(report), indent=1) + "\n",
                                     encoding="utf-8")
    gh_path = None
    att_paths: list[Path] = []
    if github:
        body, attachments = fit_github(blocks)
        gh_path = out / "issue.md"
        gh_path.write_text(body, encoding="utf-8")
        if attachments:
            adir = out / "attachments"
            adir.mkdir(exist_ok=True)
            for name, text in attachments:
                p = adir / name
                p.write_text(text, encoding="utf-8")
                att_paths.append(p)
    return Written(md_path, html_path, tuple(charts), gh_path, tuple(att_paths))


def _scrub(blk: Block, report: Report) -> Block:
    s = report.redactor.redact_secrets
    if isinstance(blk, Heading | Para | Code):
        return replace(blk, text=s(blk.text))
    if isinstance(blk, Bullets):
        return Bullets(tuple(s(x) for x in blk.items))
    if isinstance(blk, Checklist):
        return Checklist(tuple((ok, s(x)) for ok, x in blk.items))
    if isinstance(blk, Table):
        return replace(blk, rows=tuple(tuple(s(c) for c in row) for row in blk.rows))
    return blk


__all__ = [
    "GITHUB_BODY_LIMIT",
    "GITHUB_BUDGET",
    "SECTIONS",
    "Written",
    "fit_github",
    "layout",
    "report_json",
    "to_html",
    "to_markdown",
    "write_report",
]
