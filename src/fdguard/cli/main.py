"""The `fdguard` command group and the one place exceptions become exit statuses."""

from __future__ import annotations

import sys
from typing import Any

import click

from fdguard import __version__
from fdguard.errors import ExitStatus, FdguardError

EXIT_CODES_HELP = """\b
Exit statuses:
  0   ok
  1   error
  2   usage error
  3   no such process (or it exited while being read)
  4   access denied
  10  leak found
  130 interrupted
"""


class FdguardGroup(click.Group):
    """A click group whose `main` maps fdguard's typed errors to exit statuses."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FdguardError as err:
            if ctx.find_root().params.get("traceback"):
                raise
            click.echo(f"fdguard: error: {err}", err=True)
            ctx.exit(int(err.exit_status))
        except KeyboardInterrupt:
            click.echo("fdguard: interrupted", err=True)
            ctx.exit(int(ExitStatus.INTERRUPTED))
        except BrokenPipeError:
            # The reader went away (`fdguard inspect | head`): not an error of ours.
            sys.stderr.close()
            ctx.exit(int(ExitStatus.OK))


@click.group(cls=FdguardGroup, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="fdguard")
@click.option("--traceback", is_flag=True, help="Show the full traceback of an error.")
def cli(traceback: bool) -> None:
    """Find, prove and contain file-descriptor exhaustion in long-running services."""


def _register() -> None:
    from fdguard.cli import inspect_cmd

    cli.add_command(inspect_cmd.inspect)
    cli.add_command(inspect_cmd.count_cmd)

    from fdguard.cli import top_cmd

    cli.add_command(top_cmd.top_cmd)

    from fdguard.cli import explain_cmd, run_cmd

    cli.add_command(explain_cmd.explain_cmd)
    cli.add_command(run_cmd.run_cmd)

    from fdguard.cli import limits_cmd

    cli.add_command(limits_cmd.limits)

    from fdguard.cli import guard_cmd

    cli.add_command(guard_cmd.guard)

    from fdguard.cli import export_cmd, history_cmd, watch_cmd

    cli.add_command(watch_cmd.watch)
    cli.add_command(export_cmd.export)
    cli.add_command(history_cmd.history)
    cli.add_command(history_cmd.plot)

    from fdguard.cli import known_cmd

    cli.add_command(known_cmd.known)

    from fdguard.cli import trace_cmd

    cli.add_command(trace_cmd.trace)

    from fdguard.cli import stress_cmd

    cli.add_command(stress_cmd.stress)

    from fdguard.cli import demo_cmd, report_cmd

    cli.add_command(report_cmd.report)
    cli.add_command(demo_cmd.demo)

    from fdguard.cli import analyze_cmd

    cli.add_command(analyze_cmd.analyze_cmd)

    from fdguard.cli import lab_cmd

    cli.add_command(lab_cmd.lab)


_register()


def main() -> None:
    """Entry point of the console script and of `python -m fdguard`."""
    cli(prog_name="fdguard")
