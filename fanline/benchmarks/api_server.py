"""The API server the HTTP benches load: `python -m fanline.benchmarks.api_server --data-dir D --port P`.

The real app (`api.app.create_app`) over the SQLite adapters in D, under uvicorn (uvloop,
httptools, no access log), one process. `--static METHOD PATH FILE STATUS` adds a bench-only
route answering FILE's bytes: the ceiling a bench compares a real route with, served by the
same server, middleware and router. It exits cleanly on SIGTERM (uvicorn's handler).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import uvicorn
import uvloop

from api.app import create_app
from api.read import static_route
from projections.sqlite_accounts import SQLiteAccounts
from projections.sqlite_store import SQLiteStore
from streams.sqlite_log import SQLiteLog


async def serve(
    data_dir: Path, port: int, secret: str, statics: list[tuple[str, str, Path, int]], page_cache_mib: int
) -> None:
    log = SQLiteLog(data_dir / "log.db", shard_count=4)
    store = SQLiteStore(data_dir / "store.db")
    accounts = SQLiteAccounts(data_dir / "accounts.db")
    try:
        app = create_app(
            log, store, accounts, secret=secret, strategy="hybrid", page_cache_mib=page_cache_mib
        )
        for method, path, body, status in statics:
            app.router.routes.insert(0, static_route(method, path, body.read_bytes(), status))
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, http="httptools",
            access_log=False, log_level="warning", lifespan="on",
        )
        await uvicorn.Server(config).serve()
    finally:
        await accounts.close()
        await store.close()
        await log.close()


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--port", type=int, required=True)
@click.option("--secret", required=True)
@click.option("--static", "statics", multiple=True, type=(str, str, click.Path(path_type=Path), int),
              help="METHOD PATH FILE STATUS: a bench-only route answering FILE's bytes")
@click.option("--page-cache-mib", type=int, default=64, help="the timeline page cache (0: none)")
def main(
    data_dir: Path, port: int, secret: str, statics: tuple[tuple[str, str, Path, int], ...],
    page_cache_mib: int,
) -> None:
    # uvicorn's loop="uvloop" applies only to a loop uvicorn creates itself: this one is ours.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(data_dir, port, secret, list(statics), page_cache_mib))


if __name__ == "__main__":
    main()
