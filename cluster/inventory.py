"""The camera inventory: a pluggable store the controller writes before it acts, and file import.

Why SQLite is the default store (durable): the controller is a restartable actor, and a restart must
lose nothing, so every change is on disk before any group is told about it. SQLite gives that from the
standard library, in one file, with atomic transactions: an import of 10,000 cameras commits all or
nothing (a crash mid-import leaves the previous inventory), WAL + ``synchronous=FULL`` makes a commit
survive power loss, and reading it back at start-up takes milliseconds. The alternatives lose data:
Ray's internal KV lives in the GCS, which is gone with the head node unless GCS fault tolerance with an
external Redis is configured; a JSON file must be rewritten whole on every change. The file holds
camera URLs with their credentials, so it is created ``0600``. On a multi-node cluster it must sit on
the head node's persistent disk (a PVC on Kubernetes), and the controller is pinned to the head node
so that a restarted controller opens the same file (docs/deployment.md).

The store persists desired state only: specs, measured costs, the assignment and the group names. What
groups actually run is observed from the groups themselves after a restart.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cluster.assignment import Plan
from cluster.control_models import FieldError, safe_errors
from decoders.config import CameraSpec

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class InventorySnapshot:
    cameras: dict[str, CameraSpec] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)  # measured costs only
    assignment: dict[str, str] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()
    next_group_seq: int = 0


class InventoryStore(Protocol):
    def load(self) -> InventorySnapshot: ...

    def put_cameras(self, specs: Iterable[CameraSpec]) -> None:
        """Insert or replace; a replaced camera's measured cost is forgotten (its spec may cost more)."""
        ...

    def delete_cameras(self, camera_ids: Collection[str]) -> None:
        """Remove cameras with their cost and assignment."""
        ...

    def save_plan(self, plan: Plan, dead_groups: Collection[str] = ()) -> None:
        """Persist an assignment plan (moves, created/retired groups, sequence) in one transaction."""
        ...

    def save_costs(self, costs: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class SQLiteStoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["sqlite"] = "sqlite"
    path: Path = Field(Path("cctv-inventory.sqlite"), description="Database file (holds camera credentials).")


class MemoryStoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["memory"] = "memory"


StoreConfig = Annotated[SQLiteStoreConfig | MemoryStoreConfig, Field(discriminator="type")]


def build_store(config: SQLiteStoreConfig | MemoryStoreConfig) -> InventoryStore:
    if isinstance(config, SQLiteStoreConfig):
        return SQLiteInventoryStore(config.path)
    return MemoryInventoryStore()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cameras (camera_id TEXT PRIMARY KEY, spec TEXT NOT NULL, cost REAL);
CREATE TABLE IF NOT EXISTS assignments (camera_id TEXT PRIMARY KEY, group_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (group_id TEXT PRIMARY KEY);
"""


class SQLiteInventoryStore:
    """The default, durable store (see the module docstring for why SQLite)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # create it private before SQLite writes credentials into it
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        found = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if found is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(found[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: inventory schema {found[0]}; this code reads {SCHEMA_VERSION}")

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def load(self) -> InventorySnapshot:
        cameras: dict[str, CameraSpec] = {}
        costs: dict[str, float] = {}
        for camera_id, spec, cost in self._db.execute("SELECT camera_id, spec, cost FROM cameras"):
            cameras[camera_id] = CameraSpec.model_validate_json(spec)
            if cost is not None:
                costs[camera_id] = cost
        assignment = dict(self._db.execute("SELECT camera_id, group_id FROM assignments"))
        groups = frozenset(g for (g,) in self._db.execute("SELECT group_id FROM groups"))
        seq = self._db.execute("SELECT value FROM meta WHERE key='next_group_seq'").fetchone()
        return InventorySnapshot(cameras, costs, assignment, groups, int(seq[0]) if seq else 0)

    def put_cameras(self, specs: Iterable[CameraSpec]) -> None:
        rows = [(s.camera_id, json.dumps(s.secret_dict())) for s in specs]
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO cameras (camera_id, spec, cost) VALUES (?, ?, NULL)", rows)

    def delete_cameras(self, camera_ids: Collection[str]) -> None:
        rows = [(c,) for c in camera_ids]
        with self._tx() as db:
            db.executemany("DELETE FROM cameras WHERE camera_id = ?", rows)
            db.executemany("DELETE FROM assignments WHERE camera_id = ?", rows)

    def save_plan(self, plan: Plan, dead_groups: Collection[str] = ()) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO assignments VALUES (?, ?)",
                [(m.camera_id, m.target) for m in plan.moves if m.target is not None],
            )
            db.executemany(
                "DELETE FROM assignments WHERE camera_id = ?",
                [(m.camera_id,) for m in plan.moves if m.target is None],
            )
            db.executemany("INSERT OR IGNORE INTO groups VALUES (?)", [(g,) for g in plan.create])
            gone = [(g,) for g in (*plan.retire, *dead_groups)]
            db.executemany("DELETE FROM groups WHERE group_id = ?", gone)
            seq = str(plan.next_group_seq)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('next_group_seq', ?)", (seq,))

    def save_costs(self, costs: Mapping[str, float]) -> None:
        with self._tx() as db:
            rows = [(v, c) for c, v in costs.items()]
            db.executemany("UPDATE cameras SET cost = ? WHERE camera_id = ?", rows)

    def close(self) -> None:
        self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


class MemoryInventoryStore:
    """Not durable: for throwaway demos. Same contract as the SQLite store."""

    def __init__(self) -> None:
        self._cameras: dict[str, CameraSpec] = {}
        self._costs: dict[str, float] = {}
        self._assignment: dict[str, str] = {}
        self._groups: set[str] = set()
        self._seq = 0

    def load(self) -> InventorySnapshot:
        return InventorySnapshot(
            dict(self._cameras), dict(self._costs), dict(self._assignment), frozenset(self._groups), self._seq
        )

    def put_cameras(self, specs: Iterable[CameraSpec]) -> None:
        for spec in specs:
            self._cameras[spec.camera_id] = spec
            self._costs.pop(spec.camera_id, None)

    def delete_cameras(self, camera_ids: Collection[str]) -> None:
        for camera_id in camera_ids:
            self._cameras.pop(camera_id, None)
            self._costs.pop(camera_id, None)
            self._assignment.pop(camera_id, None)

    def save_plan(self, plan: Plan, dead_groups: Collection[str] = ()) -> None:
        for move in plan.moves:
            if move.target is None:
                self._assignment.pop(move.camera_id, None)
            else:
                self._assignment[move.camera_id] = move.target
        self._groups.update(plan.create)
        self._groups.difference_update((*plan.retire, *dead_groups))
        self._seq = plan.next_group_seq

    def save_costs(self, costs: Mapping[str, float]) -> None:
        self._costs.update((c, v) for c, v in costs.items() if c in self._cameras)

    def close(self) -> None:
        pass


# -- inventory files ---------------------------------------------------------------------------------


class InventoryFileError(ValueError):
    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class InventoryFile(BaseModel):
    """``cameras: [...]`` in YAML or JSON (a bare list of cameras is accepted too)."""

    model_config = ConfigDict(extra="forbid")

    cameras: list[CameraSpec] = Field(description="Camera specs, as in the API.")


def parse_inventory(data: Any) -> list[CameraSpec]:
    """Validate parsed YAML/JSON; errors name the field (``cameras.3.fps``) but never echo values."""
    try:
        specs = InventoryFile.model_validate({"cameras": data} if isinstance(data, list) else data).cameras
    except ValidationError as exc:
        errors = safe_errors(exc)
        lines = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors)
        raise InventoryFileError(f"invalid inventory: {lines}", errors) from None
    duplicates = sorted(c for c, n in Counter(s.camera_id for s in specs).items() if n > 1)
    if duplicates:
        raise InventoryFileError(f"duplicate camera_id: {', '.join(duplicates[:10])}")
    return specs


def read_inventory_file(path: Path) -> list[CameraSpec]:
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InventoryFileError(f"{path}: cannot read: {exc}") from None
    return parse_inventory(data)
