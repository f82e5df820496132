"""Real storage servers on loopback for storage tests: moto (S3), a GCS emulator, a static HTTP server.

Each runs as a child process (or, for HTTP, a thread) on a free port and is stopped by
PID in the fixture's teardown. S3 enforces credentials (moto's IAM auth), so bad
credentials really fail.
"""

from __future__ import annotations

import contextlib
import http.server
import mimetypes
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator

from kserve_torchserve.backend.ports import free_ports


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self, access_key: str | None = None, secret_key: str | None = None):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key)

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
                "S3_MAX_ATTEMPTS": "1"}


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto in server mode with IAM auth on: after three setup calls, only real keys work."""
    (port,) = free_ports(1)
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_http(endpoint + "/moto-api/", proc)  # not an AWS action: uses none of the no-auth budget
        import boto3

        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="models")
        key = iam.create_access_key(UserName="models")["AccessKey"]
        iam.put_user_policy(UserName="models", PolicyName="s3", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'))
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        _stop(proc)


@contextlib.contextmanager
def gcs_server(data_dir: Path) -> Iterator[str]:
    """gcp-storage-emulator; yields the STORAGE_EMULATOR_HOST value."""
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "--data-dir", str(data_dir), "start",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        host = f"http://127.0.0.1:{port}"
        _wait_http(host + "/storage/v1/b", proc)
        yield host
    finally:
        _stop(proc)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def guess_type(self, path: str) -> str:  # type: ignore[override]
        # The content types kserve_storage insists on for archives and plain files.
        if str(path).endswith((".tar.gz", ".tgz")):
            return "application/x-gzip"
        if str(path).endswith(".zip"):
            return "application/zip"
        return "application/octet-stream"

    def log_message(self, *args: object) -> None:
        pass


class _Recording(_Handler):
    """Records every path asked for; answers 302 to ``redirects[path]`` where one is set."""

    hits: list[str]
    redirects: dict[str, str]

    def send_head(self):  # type: ignore[no-untyped-def]
        self.hits.append(self.path)
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return super().send_head()


@dataclass
class RecordingServer:
    url: str
    hits: list[str]
    redirects: dict[str, str]


@contextlib.contextmanager
def recording_http_server(root: Path) -> Iterator[RecordingServer]:
    """A static HTTP server that records the paths it was asked for (to prove nothing was fetched)."""
    handler = type("Handler", (_Recording,), {"hits": [], "redirects": {}})
    with _serve(root, handler) as url:
        yield RecordingServer(url, handler.hits, handler.redirects)


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[str]:
    with _serve(root, _Handler) as url:
        yield url


@contextlib.contextmanager
def _serve(root: Path, handler: type[_Handler]) -> Iterator[str]:
    mimetypes.init()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
