"""`fanline graph verify`: replay the log into a scratch graph up to the graph projection's marks
and compare it with the graph, user by user (follow lists and handles).

The graph is the one FANLINE_GRAPH names (embedded: the active projection version's graph.db,
graph-r1.db, ... in the data directory; neptune); the history is the archive's and the log's (as
`fanline replay` reads them); the scratch graph is an embedded one in a temporary directory.
Prints the first differences, `identical: true|false`, and last one JSON object: events,
seconds, events_per_s, users, identical. Exits 1 when the graphs differ. Stop `fanline process`
first (or the marks move on).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

import click

from fanline import versions
from fanline.commands.options import command_settings
from fanline.graph import GraphCheck, GraphVerifyError, active_graph, verify_graph
from fanline.settings import Settings
from fanline.wiring import open_log
from projections.graph_gremlin import GremlinGraph

SHOWN_DIFFERENCES = 10


async def _verify(settings: Settings, scratch_dir: Path) -> GraphCheck:
    graph = await active_graph(settings)
    if graph is None:
        raise click.UsageError("the graph projection is off: set FANLINE_GRAPH=embedded or neptune")
    log = await open_log(settings)
    archive = await versions.open_archive(settings)
    scratch = GremlinGraph.embedded(scratch_dir / "graph.db")
    try:
        return await verify_graph(graph, log, archive, scratch)
    except GraphVerifyError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        await scratch.close()
        if archive is not None:
            await archive.close()
        await log.close()
        await graph.close()


@click.group()
def graph() -> None:
    """The social graph projection (FANLINE_GRAPH)."""


@graph.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Embedded log and graph (default FANLINE_DATA_DIR or ./.fanline).")
@click.option("--endpoint-url", help="Kinesis at this emulator URL (the aws backend).")
def verify(data_dir: Path | None, endpoint_url: str | None) -> None:
    """Replay the log into a scratch graph to the graph's marks; compare; exit 1 if they differ."""
    settings = command_settings(data_dir=data_dir, endpoint_url=endpoint_url)
    with tempfile.TemporaryDirectory(prefix="fanline-graph-verify-") as scratch:
        check = asyncio.run(_verify(settings, Path(scratch)))
    for line in check.differences[:SHOWN_DIFFERENCES]:
        click.echo(f"differs: {line}")
    if len(check.differences) > SHOWN_DIFFERENCES:
        click.echo(f"... and {len(check.differences) - SHOWN_DIFFERENCES} more")
    identical = not check.differences
    click.echo(f"replayed {check.events} events in {check.seconds:.1f} s; {check.users} users compared")
    click.echo(f"identical: {'true' if identical else 'false'}")
    click.echo(json.dumps({"events": check.events, "seconds": round(check.seconds, 2),
                           "events_per_s": round(check.events / check.seconds, 1) if check.seconds else 0.0,
                           "users": check.users, "identical": identical}))
    if not identical:
        sys.exit(1)
