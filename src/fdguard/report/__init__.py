"""Bug reports a libuv maintainer wants to receive: facts gathered, redacted, rendered.

Re-exports only. `collect` gathers the facts (store, explain, trace, lab,
stress, logs, platform) through `redact`; `charts` draws the recorded series;
`writer` renders Markdown, self-contained HTML and a GitHub issue body.
"""

from fdguard.report.collect import Report, ReportInputs, build_report, load_json
from fdguard.report.redact import RedactionSummary, Redactor
from fdguard.report.writer import SECTIONS, Written, write_report

__all__ = [
    "SECTIONS",
    "RedactionSummary",
    "Redactor",
    "Report",
    "ReportInputs",
    "Written",
    "build_report",
    "load_json",
    "write_report",
]
