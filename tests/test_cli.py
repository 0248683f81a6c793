"""The command line: `fanline token`, and `fanline up` run as a real process and stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from click.testing import CliRunner

from fanline.cli import main
from fanline.emulators import free_port

FANLINE = [sys.executable, "-c", "from fanline.cli import main; main()"]


def test_token_is_signed_with_the_data_dir_secret(tmp_path: Path) -> None:
    runner = CliRunner(env={"FANLINE_SECRET": ""})
    user = runner.invoke(main, ["token", "u1", "--data-dir", str(tmp_path)])
    producer = runner.invoke(main, ["token", "svc", "--producer", "--data-dir", str(tmp_path), "--ttl", "60"])
    assert user.exit_code == producer.exit_code == 0, user.output + producer.output
    secret = (tmp_path / "secret").read_text().strip()
    assert oct((tmp_path / "secret").stat().st_mode & 0o777) == "0o600"
    claims = jwt.decode(user.output.strip(), secret, algorithms=["HS256"])
    assert (claims["sub"], claims["scope"]) == ("u1", "user")
    claims = jwt.decode(producer.output.strip(), secret, algorithms=["HS256"])
    assert (claims["sub"], claims["scope"]) == ("svc", "producer")
    assert claims["exp"] <= time.time() + 61


@pytest.mark.parametrize(
    "args",
    [["up", "--world", "5", "--no-world"], ["up", "--aws-emulators", "--endpoint-url", "http://x"],
     ["api", "--aws-emulators"], ["process", "--aws-emulators"], ["up", "--world", "1"]],
)
def test_conflicting_options_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "Error" in result.output


class Up:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "up.out"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*FANLINE, "up", "--data-dir", str(data_dir), "--port", str(self.port), *extra],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "FANLINE_SECRET": ""},
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                healthy = httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
                if healthy and "up at" in self.output():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"no /healthz within {timeout_s} s:\n{self.output()}")

    def child_pid(self) -> int:
        found = re.search(r"processors: pid (\d+)", self.output())
        assert found, self.output()
        return int(found.group(1))

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:  # a failed test still leaves nothing running
        up.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a dead parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def write_and_read_back(up: Up, data_dir: Path) -> None:
    """A post through the API shows up in the author's timeline: the processors run."""
    token = CliRunner().invoke(main, ["token", "t", "--producer", "--data-dir", str(data_dir)]).output.strip()
    auth = {"Authorization": f"Bearer {token}"}
    posted = httpx.post(f"{up.url}/v1/posts", json={"body": "hi there", "actor_id": "w000001"}, headers=auth)
    assert posted.status_code == 202, posted.text
    # Polled, not one consistent read: on a busy 2-core machine the world may still be in the fold.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = httpx.get(f"{up.url}/v1/users/w000001/timeline", params={"limit": "1"}, headers=auth)
        assert page.status_code == 200
        if page.json()["items"] and page.json()["items"][0]["post_id"] == posted.json()["post_id"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"the post never reached the timeline:\n{up.output()}")


def test_up_serves_processes_and_stops_on_sigterm(tmp_path: Path, running: list[Up]) -> None:
    up = Up(tmp_path, "--world", "30")
    running.append(up)
    up.wait_healthy(30)
    child = up.child_pid()
    assert alive(child)
    assert "world: wrote" in up.output()
    write_and_read_back(up, tmp_path)
    metrics_url = re.search(r"metrics at (\S+)", up.output())
    assert metrics_url, up.output()
    assert "fanline_processor_millis_behind" in httpx.get(metrics_url.group(1)).text
    started = time.monotonic()
    assert up.stop() == 0, up.output()
    assert time.monotonic() - started < 10
    assert not alive(child)
    # A second start finds the world and does not write it again.
    again = Up(tmp_path, "--world", "30")
    running.append(again)
    again.wait_healthy(30)
    assert "world: exists" in again.output()
    assert again.stop() == 0


def test_up_on_the_aws_emulators(tmp_path: Path, running: list[Up]) -> None:
    up = Up(tmp_path, "--aws-emulators", "--world", "10")
    running.append(up)
    up.wait_healthy(45)
    write_and_read_back(up, tmp_path)
    assert up.stop() == 0, up.output()
    # The emulators were stopped with it: nothing listens on their data dirs any more.
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "kinesalite")], capture_output=True)
    assert leftovers.stdout == b""


def test_api_alone_serves_and_stops(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "api.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [*FANLINE, "api", "--data-dir", str(tmp_path), "--port", str(port), "--world", "5"],
            stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "API at" not in out.read_text():
            assert process.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        assert "world: wrote" in out.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, out.read_text()
