"""Shared fixtures: real data files, a real Redis-compatible server, one Ray cluster per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from cctv.redis_server import RedisServer
from models.data import DataFileMissing, DataLocator


@pytest.fixture(scope="session")
def data() -> DataLocator:
    return DataLocator.from_env()


@pytest.fixture(scope="session")
def media(data: DataLocator):
    """``media("opencv_vtest_480x360.avi") -> Path``; skips with the reason if the data is absent."""

    def resolve(name: str) -> Path:
        try:
            return data.resolve(f"media/{name}")
        except DataFileMissing as exc:
            pytest.skip(str(exc))

    return resolve


@pytest.fixture(scope="session")
def model_path(data: DataLocator):
    def resolve(name: str) -> Path:
        try:
            return data.resolve(f"models/{name}")
        except DataFileMissing as exc:
            pytest.skip(str(exc))

    return resolve


@pytest.fixture(scope="session")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def ray_serve():
    """One local Ray instance with Serve and the detector app for the whole session."""
    from cctv import runtime

    runtime.start_local_ray(num_cpus=4)
    runtime.deploy_detector({"max_replicas": 1, "num_cpus": 0.5})
    yield runtime
    runtime.shutdown()
