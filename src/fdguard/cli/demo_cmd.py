"""`fdguard demo`: a real leaking Node.js service, watched, explained, traced and reported."""

from __future__ import annotations

import click

from fdguard.demo import run_demo


@click.command("demo")
@click.option("--out", "out_dir", default="fdguard-demo-report", show_default=True,
              type=click.Path(file_okay=False),
              help="Where to write the report (the only thing the demo leaves behind).")
@click.option("--trace-window", type=float, default=3.0, show_default=True,
              help="Seconds of strace -k on the leaking service.")
@click.option("--no-emfile", is_flag=True,
              help="Stop once the leak is reported instead of letting the service hit EMFILE.")
@click.option("--guard", "guard", is_flag=True,
              help="Then run the service under `fdguard guard`, restarted gracefully before "
                   "EMFILE, and show the restarts in the report (adds about 20 s).")
def demo(out_dir: str, trace_window: float, no_emfile: bool, guard: bool) -> None:
    """Run the whole story on a real Node.js service with a real fd leak (under a minute).

    \b
    1. write a small HTTP service whose error path forgets fs.close(fd),
       start it under Node.js in a temporary directory;
    2. drive healthy loopback traffic, then requests that hit the leak;
    3. `fdguard watch` it until the leak detector fires (rate, ETA to EMFILE);
    4. `fdguard explain` whose the fds are; `fdguard trace` their birth certificates;
       with --guard, run it under `fdguard guard`, restarted before it runs out;
    5. write the bug report (Markdown, HTML, GitHub body) and print its path.
    Every process and temporary file it created is removed at the end.
    """
    res = run_demo(
        out_dir,
        on_step=click.echo,
        trace_window=trace_window,
        to_emfile=not no_emfile,
        guard=guard,
    )
    click.echo(f"done in {res.elapsed_s:.0f} s. Open the report: {res.written.markdown}")
    click.echo(f"  or in a browser: {res.written.html.resolve()}")
    click.echo(
        "On your own services: `fdguard top` (which process is nearest its limit), "
        "`fdguard inspect PID --for 30s` (what it opened meanwhile), "
        "`fdguard watch --pid PID` (leak verdict, rate, ETA)."
    )
