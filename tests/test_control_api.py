"""Control API over HTTP (ASGI, in process): auth, validation, secrecy. A real Controller behind it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from cluster.controller import Controller, ControllerConfig
from cluster.group_backend import InMemoryGroupBackend
from cluster.inventory import SQLiteInventoryStore, SQLiteStoreConfig
from serve_apps.control_api import ControlAPISettings, Role, TokenAuth, create_app

pytestmark = pytest.mark.anyio

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"
PASSWORD = "hunter2-s3cret"
SECRET_URL = f"rtsp://admin:{PASSWORD}@10.1.2.3:554/Streaming/Channels/101?token={PASSWORD}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api(tmp_path: Path):
    path = tmp_path / "inv.sqlite"
    config = ControllerConfig(store=SQLiteStoreConfig(path=path))
    controller = Controller(SQLiteInventoryStore(path), InMemoryGroupBackend(), config)
    await controller.start()
    app = create_app(controller, TokenAuth.from_tokens([ADMIN], [READER]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        client.controller = controller
        yield client
    await controller.shutdown()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CAMERA = {"camera_id": "gate-1", "url": SECRET_URL, "sampling": "keyframes", "labels": {"site": "north"}}

ROUTES = [
    ("GET", "/status", None),
    ("GET", "/cameras", None),
    ("GET", "/cameras/gate-1", None),
    ("GET", "/cameras/gate-1/status", None),
    ("POST", "/cameras", CAMERA),
    ("POST", "/cameras/_import", {"cameras": [CAMERA]}),
    ("PUT", "/cameras/gate-1", CAMERA),
    ("PATCH", "/cameras/gate-1", {"fps": 1}),
    ("DELETE", "/cameras/gate-1", None),
]
BAD_IMPORT = {"cameras": [CAMERA, {**CAMERA, "fps": 99}]}
WRITES = [r for r in ROUTES if r[0] != "GET"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("headers", [{}, auth("wrong-token-0123456789"), {"Authorization": ADMIN}])
async def test_unauthenticated_is_refused(api, method, path, body, headers):
    response = await api.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_auth_comes_before_validation(api):
    response = await api.post("/cameras", json={"camera_id": "x", "url": SECRET_URL, "fps": -1})
    assert response.status_code == 401 and PASSWORD not in response.text


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_read_only_token_cannot_change_cameras(api, method, path, body):
    await api.post("/cameras", json=CAMERA, headers=auth(ADMIN))
    response = await api.request(method, path, json=body, headers=auth(READER))
    assert response.status_code == 403
    view = (await api.get("/cameras/gate-1", headers=auth(READER))).json()
    assert view["camera"]["sampling"] == "keyframes"  # unchanged, and still readable


async def test_admin_crud_and_nothing_leaks(api):
    responses = []

    async def call(method: str, path: str, expect: int, body=None, token=ADMIN) -> httpx.Response:
        response = await api.request(method, path, json=body, headers=auth(token))
        assert response.status_code == expect, response.text
        responses.append(response)
        return response

    created = (await call("POST", "/cameras", 201, CAMERA)).json()
    assert created["camera"]["url"] == "rtsp://***@10.1.2.3:554/Streaming/Channels/101?token=***"
    assert created["phase"] == "assigned" and created["group_id"]
    await call("POST", "/cameras", 409, CAMERA)
    await asyncio.sleep(0.05)  # let the new group become ready and start the camera
    await api.controller.poll_status()
    got = (await call("GET", "/cameras/gate-1", 200, token=READER)).json()
    assert got["status"]["state"] == "online"
    await call("GET", "/cameras/gate-1/status", 200, token=READER)
    patched = (await call("PATCH", "/cameras/gate-1", 200, {"fps": 4, "labels": {"site": "south"}})).json()
    assert patched["camera"]["fps"] == 4 and patched["camera"]["labels"] == {"site": "south"}
    await call("PUT", "/cameras/gate-1", 200, {**CAMERA, "fps": 3})
    both = {"cameras": [CAMERA, {**CAMERA, "camera_id": "gate-2"}]}
    imported = await call("POST", "/cameras/_import", 200, both)
    assert imported.json()["created"] == ["gate-2"] and imported.json()["updated"] == ["gate-1"]
    listing = (await call("GET", "/cameras?limit=1&offset=1", 200, token=READER)).json()
    assert listing["total"] == 2 and [c["camera"]["camera_id"] for c in listing["cameras"]] == ["gate-2"]
    status = (await call("GET", "/status", 200, token=READER)).json()
    assert status["cameras"] == 2 and status["controller_rss_bytes"] > 0
    await call("DELETE", "/cameras/gate-2", 204)
    await call("GET", "/cameras/gate-2", 404, token=READER)
    await call("PATCH", "/cameras/gate-1", 422, {"url": "ftp://admin:" + PASSWORD + "@h/x"})
    for response in responses:
        assert PASSWORD not in response.text and "admin:" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "body", "loc"),
    [
        ("POST", "/cameras", {**CAMERA, "fps": 0}, ["body", "fps"]),
        ("POST", "/cameras", {**CAMERA, "camera_id": "no spaces"}, ["body", "camera_id"]),
        ("POST", "/cameras", {**CAMERA, "url": f"ftp://u:{PASSWORD}@h/x"}, ["body", "url"]),
        ("POST", "/cameras", {**CAMERA, "sampling": "sometimes"}, ["body", "sampling"]),
        ("POST", "/cameras", {**CAMERA, "password": PASSWORD}, ["body", "password"]),
        ("POST", "/cameras", {"url": SECRET_URL}, ["body", "camera_id"]),
        ("POST", "/cameras/_import", BAD_IMPORT, ["body", "cameras", 1, "fps"]),
        ("POST", "/cameras/_import", {"cameras": [CAMERA, CAMERA]}, ["body"]),
        ("PUT", "/cameras/other-id", CAMERA, ["body", "camera_id"]),
        ("PATCH", "/cameras/gate-1", {"fps": -2}, ["body", "fps"]),
        ("PATCH", "/cameras/gate-1", {"camera_id": "new"}, ["body", "camera_id"]),
        ("GET", "/cameras?limit=0", None, ["query", "limit"]),
    ],
)
async def test_bad_specs_get_field_level_422(api, method, path, body, loc):
    await api.post("/cameras", json=CAMERA, headers=auth(ADMIN))
    response = await api.request(method, path, json=body, headers=auth(ADMIN))
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert loc in [e["loc"] for e in errors]
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)  # no "input": it could be a URL
    assert PASSWORD not in response.text


def test_settings_read_tokens_from_env(monkeypatch):
    monkeypatch.setenv("CCTV_CONTROL_ADMIN_TOKENS", f"{ADMIN}, second-admin-token-xyz")
    monkeypatch.setenv("CCTV_CONTROL_READ_TOKENS", READER)
    auth_ = TokenAuth.from_settings(ControlAPISettings())
    assert auth_.role(ADMIN) is Role.ADMIN and auth_.role("second-admin-token-xyz") is Role.ADMIN
    assert auth_.role(READER) is Role.READ and auth_.role("nope") is None and auth_.role(None) is None
    assert ADMIN.encode() not in repr(auth_).encode()  # only digests are kept
    monkeypatch.setenv("CCTV_CONTROL_READ_TOKENS", "short")
    with pytest.raises(ValidationError):
        ControlAPISettings()


def test_an_admin_token_is_required(monkeypatch):
    monkeypatch.delenv("CCTV_CONTROL_ADMIN_TOKENS", raising=False)
    with pytest.raises(ValueError, match="no admin token"):
        TokenAuth.from_settings(ControlAPISettings())
