"""`fanline up`, `fanline api`, `fanline process`: run the API and the processors.

`up` runs the API (uvicorn) in this process and the processors as a child process
(`fanline process`), for three reasons: a Python process uses one core, and the fold and the API
then have one each; a crash of one piece does not take the other down; and it is the shape of a
deployment, where they are separate services. The child is started and stopped by its pid.

Stopping: SIGINT or SIGTERM. The API finishes its requests and the appends it accepted; the
processors finish their batch, checkpoint and release their leases; then the adapters are
closed and, with --aws-emulators, the emulators stopped. The exit status is 0.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from types import FrameType

import click
import msgspec
import uvicorn
from prometheus_client import REGISTRY, start_http_server

from api.app import create_app
from api.auth import Tokens
from fanline import emulators
from fanline.commands.options import command_settings
from fanline.graph import open_following_graph
from fanline.processing import open_following_store, run_processors
from fanline.settings import Settings
from fanline.wiring import fold_settings, open_accounts, open_log
from load.world import WorldSpec, ensure_world
from processors.metrics import Metrics
from projections.switching import SwitchingTimelineReader

DEFAULT_WORLD_USERS = 300
# A batch in hand is finished before the processors stop; a big one (the first world) on the
# emulators takes seconds. ECS gives the processor task 60 s (infra/terraform/ecs.tf).
CHILD_STOP_TIMEOUT_S = 30.0


class Stopper:
    """The SIGINT/SIGTERM handler: remembers the request and runs the stop callbacks on the loop.

    uvicorn swaps in its own handlers while serving and puts these back afterwards (replaying the
    signal to them), so a signal at any moment, before, during or after serving, stops cleanly.
    """

    def __init__(self) -> None:
        self.requested = False
        self._callbacks: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._callbacks.append(callback)
        if self.requested:
            callback()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self._loop is not None and not self._loop.is_closed():
            for callback in self._callbacks:
                # threadsafe: it also wakes a loop that sleeps in select().
                self._loop.call_soon_threadsafe(callback)


def _options(command: Callable[..., None]) -> Callable[..., None]:
    """The options every run command takes (API.md "Running")."""
    decorators = [
        click.option("--data-dir", type=click.Path(path_type=Path),
                     help="Embedded log, store, secret (default FANLINE_DATA_DIR or ./.fanline)."),
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True),
        click.option("--world", type=click.IntRange(min=2), metavar="N",
                     help=f"Write a world of N users unless one exists (up: {DEFAULT_WORLD_USERS})."),
        click.option("--no-world", is_flag=True, help="Write no synthetic world."),
        click.option("--aws-emulators", is_flag=True,
                     help="Start kinesalite and dynalite (data under the data dir) and use them."),
        click.option("--endpoint-url", metavar="URL",
                     help="Use Kinesis and DynamoDB at URL (an emulator) instead of SQLite."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def _check(world: int | None, no_world: bool, aws_emulators: bool, endpoint_url: str | None) -> None:
    if world is not None and no_world:
        raise click.UsageError("--world and --no-world exclude each other")
    if aws_emulators and endpoint_url:
        raise click.UsageError("--aws-emulators and --endpoint-url exclude each other")


# --- the API -------------------------------------------------------------------------------------


async def _serve_api(
    settings: Settings, host: str, port: int, world: int | None, stopper: Stopper,
    started: Callable[[], None] = lambda: None, watch: Callable[[], str | None] = lambda: None,
    processor_metrics_url: str | None = None,
) -> bool:
    """Serve until stopped; False when `watch()` reported a reason to give up (a dead child)."""
    async with AsyncExitStack() as stack:
        log = await open_log(settings)
        stack.push_async_callback(log.close)
        # The active projection version's store, following `fanline replay`'s switches.
        store = await open_following_store(settings)
        stack.push_async_callback(store.close)
        accounts = await open_accounts(settings)
        stack.push_async_callback(accounts.close)
        graph = await open_following_graph(settings)  # FANLINE_GRAPH: suggestions, mutuals
        if graph is not None:
            stack.push_async_callback(graph.close)
        if world is not None and not stopper.requested:
            written = await ensure_world(log, settings.data_dir, WorldSpec(users=world))
            click.echo(f"world: wrote {written} events ({world} users)" if written else "world: exists")
        # Timelines are read with the strategy of the version being served (the pointer's record),
        # which may not be FANLINE_STRATEGY's (a warning says so): it follows the switches.
        app = create_app(log, store, accounts, secret=settings.signing_secret(), strategy=store.strategy,
                         timelines=SwitchingTimelineReader(store),
                         consistency_wait_ms=settings.consistency_wait_ms,
                         celebrity_threshold=settings.celebrity_threshold,
                         graph=graph,
                         processor_metrics_url=processor_metrics_url,
                         rate_limit_per_s=settings.rate_limit_per_s,
                         page_cache_mib=settings.page_cache_mib)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        stopper.on_stop(lambda: setattr(server, "should_exit", True))
        failure: list[str] = []

        async def supervise() -> None:
            while not server.started and not server.should_exit:
                await asyncio.sleep(0.05)
            if server.started:
                started()
            while not server.should_exit:
                reason = watch()
                if reason is not None:
                    failure.append(reason)
                    server.should_exit = True
                await asyncio.sleep(0.2)

        supervisor = asyncio.create_task(supervise())
        await server.serve()
        supervisor.cancel()
        for reason in failure:
            click.echo(f"stopping: {reason}", err=True)
        return not failure


def _announce(settings: Settings, host: str, port: int) -> None:
    url = f"http://{host}:{port}"
    producer = Tokens(settings.signing_secret()).issue("fanline-cli", "producer")
    auth = f"-H {shlex.quote('Authorization: Bearer ' + producer)}"
    click.echo(f"\nfanline is up at {url}  (docs: {url}/docs; stop with Ctrl-C)\n")
    click.echo(f"a producer token (acts for any user):\n  {producer}\n")
    click.echo("try:")
    click.echo(f"  curl -s {url}/v1/users/w000001")
    click.echo(f"  curl -s {auth} '{url}/v1/users/w000001/timeline?limit=5'")
    click.echo(f"  curl -s -X POST {auth} -H 'Content-Type: application/json' "
               f"-d '{{\"body\": \"hello\", \"actor_id\": \"w000001\"}}' {url}/v1/posts")
    click.echo(f"  curl -s -X POST -H 'Content-Type: application/json' "
               f"-d '{{\"handle\": \"me\", \"password\": \"long enough\"}}' {url}/v1/auth/signup", nl=True)
    sys.stdout.flush()


# --- the processors --------------------------------------------------------------------------------


async def _process(settings: Settings, stopper: Stopper, host: str, metrics_port: int | None) -> None:
    async with AsyncExitStack() as stack:
        if metrics_port is not None:
            # The processors' own /metrics (lag per shard, deliveries, dead letters): in a
            # deployment they are another service than the API, scraped on their own.
            metrics_server, _ = start_http_server(metrics_port, addr=host, registry=REGISTRY)
            stack.callback(metrics_server.shutdown)
        log = await open_log(settings)
        stack.push_async_callback(log.close)
        # The runner on the active projection version (it moves on when `fanline replay` switches)
        # and the archiver; both return after stop(): batch finished, checkpointed, leases released.
        await run_processors(settings, log, fold_settings(settings), Metrics(REGISTRY),
                             f"{socket.gethostname()}-{os.getpid()}", stopper.on_stop)


def _spawn_processors(settings: Settings, host: str, metrics_port: int) -> subprocess.Popen[bytes]:
    """`fanline process` with these settings, passed through the environment."""
    env = {**os.environ, "FANLINE_DATA_DIR": str(settings.data_dir), "FANLINE_BACKEND": settings.backend}
    for name in ("endpoint_url", "kinesis_endpoint_url"):
        value = getattr(settings, name)
        if value is not None:
            env[f"FANLINE_{name.upper()}"] = value
    # The child's own Ctrl-C handling would race ours: it gets SIGTERM from us, by pid, instead.
    return subprocess.Popen(
        [sys.executable, "-c", "from fanline.cli import main; main()", "process",
         "--host", host, "--metrics-port", str(metrics_port)],
        env=env, start_new_session=True,
    )


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        click.echo(f"stopping the processors (pid {child.pid}); they finish their batch first")
        os.kill(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=CHILD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # Safe, only slower next time: the unfinished batch is delivered again (at least once).
            click.echo(f"processors (pid {child.pid}) still busy after {CHILD_STOP_TIMEOUT_S:g} s: killed",
                       err=True)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


# --- the commands --------------------------------------------------------------------------------


@click.command()
@_options
def up(data_dir: Path | None, host: str, port: int, world: int | None, no_world: bool,
       aws_emulators: bool, endpoint_url: str | None) -> None:
    """Run the API and the processors together (with a small synthetic world) until Ctrl-C."""
    _check(world, no_world, aws_emulators, endpoint_url)
    settings = command_settings(data_dir=data_dir, endpoint_url=endpoint_url)
    stopper = Stopper()
    stopper.install()
    ok = True
    with ExitStack() as cleanup:
        if aws_emulators:
            click.echo("starting kinesalite and dynalite ...")
            # The SDK signs every request, the emulators check nothing: dummy credentials will do.
            for name, value in (("AWS_ACCESS_KEY_ID", "emulator"), ("AWS_SECRET_ACCESS_KEY", "emulator")):
                os.environ.setdefault(name, value)
            kinesis = emulators.start("kinesalite", settings.data_dir / "kinesalite")
            cleanup.callback(kinesis.stop)
            dynamo = emulators.start("dynalite", settings.data_dir / "dynalite")
            cleanup.callback(dynamo.stop)
            settings = msgspec.structs.replace(
                settings, backend="aws", endpoint_url=dynamo.endpoint_url,
                kinesis_endpoint_url=kinesis.endpoint_url,
            )
        if stopper.requested:
            return
        # The API opens (and with an emulator, creates) the log and tables before the child starts.
        children: list[subprocess.Popen[bytes]] = []
        # Chosen now so the API's pipeline page can read the processors' metrics (api.web).
        metrics_port = emulators.free_port()

        def started() -> None:
            child = _spawn_processors(settings, host, metrics_port)
            children.append(child)
            cleanup.callback(_stop_child, child)
            click.echo(f"processors: pid {child.pid}, metrics at http://{host}:{metrics_port}/metrics")
            _announce(settings, host, port)

        def watch() -> str | None:
            if children and children[0].poll() is not None:
                return f"the processors (pid {children[0].pid}) exited with {children[0].returncode}"
            return None

        users = None if no_world else (world or DEFAULT_WORLD_USERS)
        ok = asyncio.run(_serve_api(settings, host, port, users, stopper, started, watch,
                                    processor_metrics_url=f"http://{host}:{metrics_port}/metrics"))
    click.echo("stopped")
    if not ok:
        sys.exit(1)


@click.command()
@_options
def api(data_dir: Path | None, host: str, port: int, world: int | None, no_world: bool,
        aws_emulators: bool, endpoint_url: str | None) -> None:
    """Run the API only (a world only when --world N is given)."""
    _check(world, no_world, aws_emulators, endpoint_url)
    if aws_emulators:
        raise click.UsageError("--aws-emulators is for `fanline up`; give `fanline api` --endpoint-url")
    settings = command_settings(data_dir=data_dir, endpoint_url=endpoint_url)
    stopper = Stopper()
    stopper.install()
    url = f"http://{host}:{port}"
    asyncio.run(_serve_api(settings, host, port, world, stopper, lambda: click.echo(f"API at {url}")))


@click.command()
@_options
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve the processors' Prometheus metrics at http://HOST:PORT/metrics.")
def process(data_dir: Path | None, host: str, port: int, world: int | None, no_world: bool,
            aws_emulators: bool, endpoint_url: str | None, metrics_port: int | None) -> None:
    """Run the processors only (--port and the world options do not apply)."""
    _check(world, no_world, aws_emulators, endpoint_url)
    if aws_emulators:
        raise click.UsageError("--aws-emulators is for `fanline up`; give `fanline process` --endpoint-url")
    settings = command_settings(data_dir=data_dir, endpoint_url=endpoint_url)
    stopper = Stopper()
    stopper.install()
    asyncio.run(_process(settings, stopper, host, metrics_port))
