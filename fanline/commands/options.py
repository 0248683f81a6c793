"""What the commands share about their options."""

from __future__ import annotations

from typing import Any

import click

from fanline.settings import Settings, SettingsError


def command_settings(*, endpoint_url: str | None = None, **options: Any) -> Settings:
    """The settings a command runs with: defaults, then FANLINE_* variables, then its options
    (None: not given). `--endpoint-url` means the aws backend there. A bad one is a usage error."""
    overrides: dict[str, Any] = {**options, "endpoint_url": endpoint_url}
    if endpoint_url is not None:
        overrides["backend"] = "aws"
    try:
        return Settings.load(overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
