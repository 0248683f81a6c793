"""A `fanline up` in a child process for the load tools: started on a free port, stopped by pid.

    with Server(data_dir, strategy="hybrid", threshold=3154) as server:
        httpx.get(f"{server.url}/healthz")
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from fanline.emulators import free_port

STOP_TIMEOUT_S = 40.0


class Server:
    def __init__(self, data_dir: Path, *, strategy: str = "hybrid", threshold: int | None = None,
                 world: int | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = data_dir / f"up-{self.port}.out"
        # No page cache (api.timeline_cache): the experiments compare the strategies' store reads.
        env = {**os.environ, "FANLINE_STRATEGY": strategy, "FANLINE_PAGE_CACHE_MIB": "0", **(extra_env or {})}
        if threshold is not None:
            env["FANLINE_CELEBRITY_THRESHOLD"] = str(threshold)
        world_args = ["--no-world"] if world is None else ["--world", str(world)]
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from fanline.cli import main; main()", "up", "--data-dir",
                 str(data_dir), "--port", str(self.port), *world_args],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until /readyz answers 200 and the processors are started (`up` says "up at")."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fanline up exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200 and "up at" in self.output():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"fanline up not ready within {timeout_s} s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM by pid; the API and the processors finish what they hold. The exit status."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
