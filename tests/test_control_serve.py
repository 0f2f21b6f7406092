"""The control API as deployed: a Serve ingress over real HTTP, starting the controller itself."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from cluster.ray_layer import stop_controller
from serve_apps.control_api import app_builder

pytestmark = pytest.mark.slow

ADMIN = "serve-admin-token-0123456789"
PASSWORD = "pw-in-url-42"


def _http_port() -> int:
    client = serve.context._get_global_client()
    return ray.get(client._controller.get_http_config.remote()).port


def test_serve_ingress_starts_controller_and_serves_http(
    ray_serve, redis_url: str, tmp_path: Path, monkeypatch
):
    run = uuid.uuid4().hex[:6]
    name, prefix = f"cctv-controller-serve-{run}", f"cctv-serve-{run}-"
    monkeypatch.setenv("CCTV_CONTROL_ADMIN_TOKENS", ADMIN)  # read once, by app_builder
    args = {
        "controller_name": name,
        "num_cpus": 0.05,
        "controller": {
            "store": {"type": "sqlite", "path": str(tmp_path / "inventory.sqlite")},
            "groups": {"actor_prefix": prefix, "num_cpus": 0.05, "config": {"redis_url": redis_url}},
        },
    }
    app = f"control-{run}"
    serve.run(app_builder(args), name=app, route_prefix=f"/{app}")
    base = f"http://127.0.0.1:{_http_port()}/{app}"
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/status").status_code == 401
            admin = {"Authorization": f"Bearer {ADMIN}"}
            cameras = [
                {"camera_id": "serve-1", "url": f"sim://viewer:{PASSWORD}@serve-1", "fps": 2},
                {"camera_id": "serve-2", "url": "sim://serve-2", "fps": 2},
            ]
            response = http.post("/cameras/_import", json={"cameras": cameras}, headers=admin)
            assert response.status_code == 200, response.text
            assert response.json()["created"] == ["serve-1", "serve-2"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = http.get("/status", headers=admin).json()
                if status["by_state"].get("online") == 2:
                    break
                time.sleep(0.5)
            views = [http.get(f"/cameras/{c['camera_id']}", headers=admin).json() for c in cameras]
            assert status["by_state"] == {"online": 2}, (status, views)
            view = http.get("/cameras/serve-1", headers=admin)
            assert view.json()["status"]["simulated"] is True
            assert PASSWORD not in view.text and PASSWORD not in http.get("/cameras", headers=admin).text
    finally:
        serve.delete(app)
        stop_controller(name, stop_groups=True)
