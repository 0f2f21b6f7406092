"""``cctv cameras ...`` / ``cctv status`` against the real API app and a real Controller (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cctv.cli_control import control_app
from cluster.controller import Controller, ControllerConfig
from cluster.group_backend import InMemoryGroupBackend
from cluster.inventory import SQLiteInventoryStore, SQLiteStoreConfig
from serve_apps.control_api import TokenAuth, create_app

ADMIN, READER = "admin-token-0123456789", "reader-token-0123456789"


@pytest.fixture
def app(tmp_path: Path):
    path = tmp_path / "inv.sqlite"
    config = ControllerConfig(store=SQLiteStoreConfig(path=path))
    controller = Controller(SQLiteInventoryStore(path), InMemoryGroupBackend(), config)
    api = create_app(controller, TokenAuth.from_tokens([ADMIN], [READER]))
    api.router.on_startup.append(controller.start)  # start on the TestClient's event loop
    return api


def cli(http: TestClient, *args: str, token: str = ADMIN, stdin: str | None = None):
    http.headers["Authorization"] = f"Bearer {token}"
    return CliRunner().invoke(control_app, list(args), obj={"http": http}, input=stdin)


def test_camera_lifecycle_from_the_cli(app, tmp_path: Path):
    inventory = tmp_path / "cams.yaml"
    inventory.write_text(
        "cameras:\n"
        "  - {camera_id: gate-1, url: 'rtsp://u:pw-secret@10.0.0.1/s', sampling: keyframes}\n"
        "  - {camera_id: gate-2, url: 'sim://gate-2', fps: 1}\n"
    )
    with TestClient(app) as http:
        result = cli(http, "cameras", "import", str(inventory))
        assert result.exit_code == 0, result.output
        assert "2 created" in result.output
        result = cli(
            http, "cameras", "add", "gate-3", "-", "--fps", "5", "--label", "site=north", stdin="sim://g3\n"
        )
        assert result.exit_code == 0 and "added gate-3" in result.output
        result = cli(http, "cameras", "update", "gate-3", "--fps", "1", "--disable")
        assert result.exit_code == 0 and "enabled, fps" in result.output
        listing = cli(http, "cameras", "list", "--json", token=READER)
        assert listing.exit_code == 0
        views = {v["camera"]["camera_id"]: v for v in json.loads(listing.output)["cameras"]}
        assert views["gate-3"]["phase"] == "disabled" and views["gate-3"]["camera"]["labels"] == {
            "site": "north"
        }
        table = cli(http, "cameras", "list", token=READER)
        assert "gate-1" in table.output and "pw-secret" not in table.output
        got = cli(http, "cameras", "get", "gate-1", token=READER)
        assert '"sampling": "keyframes"' in got.output and "pw-secret" not in got.output
        status = cli(http, "status", token=READER)
        assert status.exit_code == 0 and "3 cameras" in status.output
        assert cli(http, "cameras", "rm", "gate-2").exit_code == 0


@pytest.mark.parametrize(
    ("args", "token", "message"),
    [
        (["cameras", "rm", "gate-9"], ADMIN, "HTTP 404"),
        (["cameras", "add", "x", "sim://x", "--fps", "0"], ADMIN, "fps: Input should be greater than 0"),
        (["cameras", "add", "x", "sim://x"], READER, "HTTP 403"),
        (["status"], "wrong-token-0123456789", "HTTP 401"),
        (["cameras", "update", "x"], ADMIN, "nothing to change"),
    ],
)
def test_cli_errors_are_short_and_non_zero(app, args, token, message):
    with TestClient(app) as http:
        result = cli(http, *args, token=token)
    assert result.exit_code == 1
    assert message in result.output


def test_import_file_errors_are_reported_before_sending(app, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - {camera_id: a, url: 'rtsp://u:pw-secret@h/x', fps: -1}\n")
    with TestClient(app) as http:
        result = cli(http, "cameras", "import", str(bad))
    assert result.exit_code == 1 and "cameras.0.fps" in result.output and "pw-secret" not in result.output
