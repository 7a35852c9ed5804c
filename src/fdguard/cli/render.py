"""Shared rendering helpers: JSON output and rich consoles bound to click's streams."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console


def echo_json(data: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(json.dumps(data, indent=None, separators=(",", ":"), sort_keys=False))


def console() -> Console:
    """A rich console writing to click's current stdout (so CliRunner captures it).

    Markup is off: fd targets such as "anon_inode:[eventpoll]" contain brackets.
    Piped output is not wrapped at 80 columns, so `| grep` sees whole lines.
    """
    stream = sys.stdout  # CliRunner swaps it too (click.get_text_stream is deprecated)
    width = None if stream.isatty() else 400
    return Console(file=stream, highlight=False, markup=False, soft_wrap=False, width=width)
