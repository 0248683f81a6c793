"""`fanline token USER_ID [--producer]`: print a bearer token signed with the deployment's secret."""

from __future__ import annotations

from pathlib import Path

import click

from api.auth import TOKEN_TTL_S, Tokens
from fanline.commands.options import command_settings


@click.command()
@click.argument("user_id")
@click.option("--producer", is_flag=True, help="Producer scope: may act for any user and read any timeline.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where the local secret lives.")
@click.option("--ttl", type=click.IntRange(min=1), default=TOKEN_TTL_S, show_default=True,
              help="Seconds until the token expires.")
def token(user_id: str, producer: bool, data_dir: Path | None, ttl: int) -> None:
    """Print a bearer token for USER_ID (FANLINE_SECRET, or the secret in the data directory)."""
    settings = command_settings(data_dir=data_dir)
    tokens = Tokens(settings.signing_secret(), ttl_s=ttl)
    click.echo(tokens.issue(user_id, "producer" if producer else "user"))
