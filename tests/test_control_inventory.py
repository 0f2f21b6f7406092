"""Inventory stores (same contract, SQLite durable across reopen) and inventory file import."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cluster.assignment import Move, Plan
from cluster.inventory import (
    InventoryFileError,
    MemoryInventoryStore,
    SQLiteInventoryStore,
    parse_inventory,
    read_inventory_file,
)
from decoders.config import CameraSpec

SECRET_URL = "rtsp://admin:hunter2@10.0.0.5/stream1"


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path: Path):
    s = SQLiteInventoryStore(tmp_path / "inv.sqlite") if request.param == "sqlite" else MemoryInventoryStore()
    yield s
    s.close()


def test_store_contract(store):
    a = CameraSpec(camera_id="a", url=SECRET_URL)
    b = CameraSpec(camera_id="b", url="sim://b", fps=5)
    store.put_cameras([a, b])
    store.save_costs({"a": 0.12, "zzz": 1.0})  # unknown ids are ignored
    moves = (Move("a", None, "g0"), Move("b", None, "g1"))
    store.save_plan(Plan(assignment={}, moves=moves, create=("g0", "g1"), next_group_seq=2))
    snap = store.load()
    assert snap.cameras["a"].url.get_secret_value() == SECRET_URL  # the store keeps what groups need
    assert snap.cameras["b"] == b and snap.costs == {"a": 0.12}
    assert snap.assignment == {"a": "g0", "b": "g1"} and snap.groups == {"g0", "g1"}
    assert snap.next_group_seq == 2
    # A replaced spec forgets its measured cost; a removal forgets the camera and its assignment.
    store.put_cameras([a.model_copy(update={"fps": 1.0})])
    store.save_plan(Plan(assignment={}, moves=(Move("b", "g1", None),), retire=("g1",), next_group_seq=2))
    store.delete_cameras(["b"])
    snap = store.load()
    assert snap.costs == {} and snap.cameras["a"].fps == 1.0 and set(snap.cameras) == {"a"}
    assert snap.assignment == {"a": "g0"} and snap.groups == {"g0"}
    store.save_plan(Plan(assignment={}, next_group_seq=2), dead_groups=["g0"])
    assert store.load().groups == frozenset()


def test_sqlite_survives_reopen_and_is_private(tmp_path: Path):
    path = tmp_path / "sub" / "inv.sqlite"
    store = SQLiteInventoryStore(path)
    store.put_cameras([CameraSpec(camera_id=f"c{i}", url=SECRET_URL) for i in range(100)])
    store.save_plan(Plan(assignment={}, moves=(Move("c1", None, "g7"),), create=("g7",), next_group_seq=8))
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds camera passwords
    reopened = SQLiteInventoryStore(path)
    snap = reopened.load()
    assert len(snap.cameras) == 100 and snap.assignment == {"c1": "g7"} and snap.next_group_seq == 8
    reopened.close()


def test_sqlite_transaction_is_all_or_nothing(tmp_path: Path):
    store = SQLiteInventoryStore(tmp_path / "inv.sqlite")
    store.put_cameras([CameraSpec(camera_id="keep", url="sim://k")])

    class Boom(CameraSpec):
        def secret_dict(self) -> dict:
            raise RuntimeError("crash mid-import")

    batch = [CameraSpec(camera_id="new", url="sim://n"), Boom(camera_id="bad", url="sim://b")]
    with pytest.raises(RuntimeError):
        store.put_cameras(batch)
    assert set(store.load().cameras) == {"keep"}
    store.close()


YAML = """
cameras:
  - camera_id: gate-1
    url: rtsp://user:pw@cam1/stream
    sampling: keyframes
    labels: {site: north}
  - camera_id: gate-2
    url: sim://gate-2
    fps: 1
"""


@pytest.mark.parametrize(
    ("name", "text", "ids"),
    [
        ("inv.yaml", YAML, ["gate-1", "gate-2"]),
        ("inv.json", json.dumps({"cameras": [{"camera_id": "x", "url": "sim://x"}]}), ["x"]),
        ("inv.yml", "- {camera_id: y, url: 'sim://y'}\n", ["y"]),  # a bare list
    ],
)
def test_read_inventory_file(tmp_path: Path, name: str, text: str, ids: list[str]):
    path = tmp_path / name
    path.write_text(text)
    assert [s.camera_id for s in read_inventory_file(path)] == ids


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"cameras": [{"camera_id": "a", "url": "rtsp://u:secretpw@h/x", "fps": 0}]}, "cameras.0.fps"),
        ({"cameras": [{"camera_id": "bad id!", "url": "rtsp://u:secretpw@h/x"}]}, "cameras.0.camera_id"),
        ({"cameras": [{"camera_id": "a", "url": "ftp://u:secretpw@h/x"}]}, "unsupported scheme"),
        ({"cameras": [{"camera_id": "a", "url": "sim://a", "colour": 1}]}, "cameras.0.colour"),
        ({"cams": []}, "cameras: Field required"),
        ([{"camera_id": "a", "url": "sim://a"}, {"camera_id": "a", "url": "sim://b"}], "duplicate camera_id"),
    ],
)
def test_inventory_errors_name_the_field_without_values(data, fragment):
    with pytest.raises(InventoryFileError) as err:
        parse_inventory(data)
    assert fragment in str(err.value)
    assert "secretpw" not in str(err.value) and "secretpw" not in repr(err.value.errors)
