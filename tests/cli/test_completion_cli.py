"""Shell completion, as README.md says to turn it on: commands, options, choices."""

from __future__ import annotations

import os
import subprocess
import sys


def _complete(words: str) -> list[str]:
    env = {**os.environ, "_FDGUARD_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - 1)}
    out = subprocess.run([sys.executable, "-m", "fdguard"], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return [line.split(",", 1)[1] for line in out.stdout.splitlines()]


def test_commands_options_and_choices_complete() -> None:
    assert _complete("fdguard to") == ["top"]
    assert "--kind" in _complete("fdguard inspect --ki")
    assert _complete("fdguard top --sort g") == ["growth"]


def test_the_bash_script_readme_evals_is_printed() -> None:
    env = {**os.environ, "_FDGUARD_COMPLETE": "bash_source"}
    out = subprocess.run([sys.executable, "-m", "fdguard"], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert "complete -o nosort -F _fdguard_completion fdguard" in out.stdout
