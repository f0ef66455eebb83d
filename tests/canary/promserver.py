"""The real Prometheus server (/usr/bin/prometheus) on loopback, and a tiny exporter for it to scrape."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def prometheus_server(tmp: Path, scrape_target: str | None = None) -> Iterator[str]:
    """A fresh Prometheus; with ``scrape_target`` (host:port) it scrapes that every second. Its URL."""
    scrape = "scrape_configs: []"
    if scrape_target:
        job = f"{{job_name: exporter, scrape_interval: 1s, static_configs: [{{targets: ['{scrape_target}']}}]}}"
        scrape = f"scrape_configs: [{job}]"
    (tmp / "prometheus.yml").write_text(f"global: {{scrape_interval: 1h}}\n{scrape}\n")
    port = free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/-/ready", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError("prometheus did not become ready")
        yield url
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def exporter(body: Callable[[], str]) -> Iterator[str]:
    """Serves ``body()`` (Prometheus text format) at /metrics on loopback; its host:port."""

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook
            data = body().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
