"""Session-wide servers: kinesalite and dynalite on 127.0.0.1, started once, stopped by pid."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanline import emulators

# The AWS SDK wants credentials and a region even for the emulators; never real ones in tests.
os.environ.update(
    AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1"
)
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def kinesalite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulators.Emulator]:
    emulator = emulators.start("kinesalite", Path(tmp_path_factory.mktemp("kinesalite")))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def dynalite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulators.Emulator]:
    emulator = emulators.start("dynalite", Path(tmp_path_factory.mktemp("dynalite")))
    yield emulator
    emulator.stop()
