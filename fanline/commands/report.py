"""`fanline report`: tables and plots of the experiment results, in reports/<date>/README.md."""

from __future__ import annotations

import time
from pathlib import Path

import click

from load.report import write_report


@click.command()
@click.option(
    "--results",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=Path("reports/raw"),
    show_default=True,
    help="Where `fanline experiment` wrote its JSON.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Where the report goes (default reports/<date>)."
)
def report(results: Path, out: Path | None) -> None:
    """Write README.md and PNG plots of every experiment result found."""
    out = out or Path("reports") / time.strftime("%Y-%m-%d")
    readme = write_report(results, out)
    click.echo(f"report: {readme} ({len(list(out.glob('*.png')))} plots)")
