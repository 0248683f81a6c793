"""moto's S3 server on a free 127.0.0.1 port, for the archive tests (stopped by the caller)."""

from __future__ import annotations

from moto.server import ThreadedMotoServer

from fanline import emulators


def start_s3() -> tuple[ThreadedMotoServer, str]:
    port = emulators.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"
