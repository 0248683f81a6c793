"""The `fanline` command line. Each command group lives in its own module under fanline/commands."""

from __future__ import annotations

import click

from fanline.benchmarks.dynamodb_write import bench_dynamodb_write
from fanline.commands import log as log_commands
from fanline.commands.bench_fanout import bench_fanout
from fanline.commands.bench_log import bench_log
from fanline.commands.bench_read import bench_read
from fanline.commands.bench_write import bench_write
from fanline.commands.deadletters import deadletters
from fanline.commands.experiment import experiment
from fanline.commands.graph import graph
from fanline.commands.infra import infra
from fanline.commands.replay import replay_command
from fanline.commands.report import report
from fanline.commands.run import api, process, up
from fanline.commands.soak import soak
from fanline.commands.token import token
from fanline.commands.world import world


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """fanline: an event-sourced social timeline pipeline."""


@main.group()
def bench() -> None:
    """Benchmarks: each prints its figures and, last, one JSON object."""


@main.group()
def log() -> None:
    """Look at the event log."""


main.add_command(infra)
bench.add_command(bench_fanout)
bench.add_command(bench_log)
bench.add_command(bench_read)
bench.add_command(bench_write)
# `bench write` is the HTTP write bench (Makefile); the DynamoDB store's own is `bench dynamodb-write`.
bench.add_command(bench_dynamodb_write, name="dynamodb-write")
log.add_command(log_commands.tail)
log.add_command(log_commands.stats)
main.add_command(up)
main.add_command(api)
main.add_command(process)
main.add_command(replay_command)
main.add_command(token)
main.add_command(deadletters)
main.add_command(soak)
main.add_command(world)
main.add_command(graph)
main.add_command(experiment)
main.add_command(report)
