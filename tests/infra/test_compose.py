"""docker-compose.yml, the Dockerfile and .dockerignore, checked statically (no Docker engine here):
the services' FANLINE_* settings against Settings, the emulators against infra/local/package.json
and fanline/emulators.py, the commands against the CLI."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from fanline import emulators
from fanline.cli import main
from fanline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
FANLINE_SERVICES = ("processor", "api")
EMULATORS = ("kinesalite", "dynalite")


def _interpolate(value: str) -> str:
    """Compose's `${NAME:-default}` as it comes out when NAME is unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def _environment(service: str) -> dict[str, str]:
    return {k: _interpolate(str(v)) for k, v in SERVICES[service].get("environment", {}).items()}


def _command(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _emulator_argv(name: str) -> list[str]:
    """The emulator's own command line: what follows `exec` in the shell script."""
    shell, flag, script = _command(name)
    assert (shell, flag) == ("sh", "-c")
    return shlex.split(script.split("exec ", 1)[1])


def _listening_port(name: str) -> int:
    argv = _emulator_argv(name)
    return int(argv[argv.index("--port") + 1])


@pytest.mark.parametrize("service", FANLINE_SERVICES)
def test_fanline_services_read_only_real_settings(service: str) -> None:
    environment = _environment(service)
    names = [k for k in environment if k.startswith("FANLINE_")]
    assert names
    for name in names:
        assert name.removeprefix("FANLINE_").lower() in Settings.__struct_fields__, name
    settings = Settings.load(environ=environment)  # every value valid, too
    assert settings.backend == "aws"


@pytest.mark.parametrize("service", FANLINE_SERVICES)
def test_fanline_services_point_at_the_emulators(service: str) -> None:
    settings = Settings.load(environ=_environment(service))
    for url, emulator in ((settings.endpoint_url, "dynalite"), (settings.kinesis_endpoint_url, "kinesalite")):
        assert url is not None
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == (emulator, _listening_port(emulator)), url
    depends = SERVICES[service]["depends_on"]
    conditions = {name: depends[name]["condition"] for name in EMULATORS}
    assert conditions == dict.fromkeys(EMULATORS, "service_healthy")
    assert SERVICES[service]["build"] == "."


@pytest.mark.parametrize("name", EMULATORS)
def test_emulators_run_the_npm_packages_of_infra_local(name: str) -> None:
    package = json.loads((ROOT / "infra" / "local" / "package.json").read_text())
    assert name in package["dependencies"]
    service = SERVICES[name]
    assert service["image"].startswith("node:20")
    argv = _emulator_argv(name)
    assert argv[0] == f"node_modules/.bin/{name}"
    assert "npm ci" in _command(name)[2]  # installed from the lock file
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    workdir = service["working_dir"]
    assert mounts[f"{workdir}/package.json"] == "./infra/local/package.json"
    assert mounts[f"{workdir}/package-lock.json"] == "./infra/local/package-lock.json"
    # Data kept under --path on a named volume; the same no-delay flags as fanline/emulators.py.
    assert argv[argv.index("--path") + 1] == "/data" and mounts["/data"] in COMPOSE["volumes"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    flags = emulators._FLAGS[name]
    assert " ".join(flags) in " ".join(argv)
    port = _listening_port(name)
    assert f"{port}:{port}" in service["ports"]
    assert str(port) in " ".join(service["healthcheck"]["test"])


def test_fanline_services_run_cli_commands() -> None:
    assert _command("processor")[0] in main.commands
    api = _command("api")
    assert api[0] in main.commands and api[0] == "api"
    port = api[api.index("--port") + 1]
    assert api[api.index("--host") + 1] == "0.0.0.0"
    assert f"{port}:{port}" in SERVICES["api"]["ports"]


def test_locust_is_an_optional_profile_built_with_the_load_extra() -> None:
    locust = SERVICES["locust"]
    assert locust["profiles"] == ["load"]
    assert "load" in locust["build"]["args"]["EXTRAS"].split(",")
    assert locust["entrypoint"] == ["locust"]
    command = locust["command"]
    assert command[command.index("--host") + 1] == f"http://api:{_command('api')[-1]}"
    assert all("profiles" not in SERVICES[s] for s in (*EMULATORS, *FANLINE_SERVICES))


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_dockerfile_runs_fanline_as_a_non_root_user_on_any_architecture() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert [line for line in instructions if line.startswith("FROM")] == [
        "FROM python:3.11-slim AS build", "FROM python:3.11-slim"]
    [user] = [line.split()[1] for line in instructions if line.startswith("USER")]
    assert user.split(":")[0] not in {"root", "0"}
    assert 'ENTRYPOINT ["fanline"]' in instructions
    # No architecture-specific downloads: nothing names one outside the comments.
    assert not re.search(r"amd64|x86_64|aarch64|arm64", "\n".join(instructions))
    [extras] = re.findall(r"^ARG EXTRAS=(\S+)$", text, flags=re.M)
    assert set(extras.split(",")) <= set(_pyproject()["project"]["optional-dependencies"])
    locust_extras = SERVICES["locust"]["build"]["args"]["EXTRAS"]
    assert set(locust_extras.split(",")) <= set(_pyproject()["project"]["optional-dependencies"])


def test_dockerignore_lets_in_exactly_what_pip_install_needs() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"  # deny everything (.venv, node_modules, data), then allow
    allowed = {line.removeprefix("!").rstrip("/") for line in lines if line.startswith("!")}
    packages = set(_pyproject()["tool"]["setuptools"]["packages"]["find"]["include"])
    wanted = {p.rstrip("*") for p in packages}
    assert wanted | {"pyproject.toml", "README.md"} == allowed
