"""Secrets: the signing secret comes from FANLINE_SECRET or is generated once into the data
directory with mode 0600; `fanline up` generates it on first run, keeps it, and never shows it (not
in its output, nor in any answer of the API). The same run checks that FANLINE_RATE_LIMIT_PER_S
reaches `fanline up`'s API."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt

from api.auth import Tokens
from fanline.emulators import free_port
from fanline.settings import Settings


def test_a_generated_secret_is_0600_kept_and_an_explicit_one_wins(tmp_path: Path) -> None:
    settings = Settings.load({"data_dir": tmp_path / "d"}, environ={})
    secret = settings.signing_secret()
    path = tmp_path / "d" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) >= 32
    again = Settings.load({"data_dir": tmp_path / "d"}, environ={})
    assert settings.signing_secret() == secret == again.signing_secret()  # kept, not regenerated
    other = Settings.load({"data_dir": tmp_path / "e"}, environ={"FANLINE_SECRET": "from-the-environment"})
    assert other.signing_secret() == "from-the-environment"
    assert not (tmp_path / "e" / "secret").exists()


def test_fanline_up_generates_the_secret_on_first_run_and_never_shows_it(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANLINE_")}
    env["FANLINE_RATE_LIMIT_PER_S"] = "5"  # also checked here: the setting reaches fanline up's API
    output = tmp_path / "up.log"
    with output.open("wb") as sink:
        up = subprocess.Popen(
            [sys.executable, "-c", "from fanline.cli import main; main()", "up", "--no-world",
             "--data-dir", str(data), "--port", str(port)], env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            assert up.poll() is None, output.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        secret = (data / "secret").read_text().strip()
        assert stat.S_IMODE((data / "secret").stat().st_mode) == 0o600
        answers = [httpx.get(f"{base}{path}", timeout=10).text
                   for path in ("/metrics", "/v1/pipeline", "/openapi.json", "/healthz", "/readyz")]
        assert not any(secret in a for a in answers)
        producer = {"Authorization": f"Bearer {Tokens(secret).issue('loader', 'producer')}"}
        statuses = [httpx.get(f"{base}/v1/users/x/timeline", headers=producer, timeout=10).status_code
                    for _ in range(40)]
        assert statuses[:10] == [200] * 10 and 429 in statuses  # bursts of 10, then refused
    finally:
        os.kill(up.pid, signal.SIGTERM)
        assert up.wait(timeout=30) == 0
    printed = output.read_text()
    assert secret not in printed
    # What it prints instead: a producer token signed with the secret.
    token = next(line.strip() for line in printed.splitlines() if line.strip().startswith("eyJ"))
    assert jwt.decode(token, secret, algorithms=["HS256"])["scope"] == "producer"
