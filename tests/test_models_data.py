"""DataLocator: lookup order, the missing-file message, and sha256-checked fetching (file:// URLs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from models.data import CATALOGUE, DataFileCorrupt, DataFileMissing, DataLocator, sha256_of
from models.detector import Detector

CLASSES = "models/coco_classes.txt"


def _locator(tmp_path: Path) -> DataLocator:
    return DataLocator(search_dirs=(tmp_path / "first", tmp_path / "second"), cache_dir=tmp_path / "cache")


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_missing_file_error_names_directories_and_fetch_command(tmp_path: Path) -> None:
    locator = _locator(tmp_path)
    with pytest.raises(DataFileMissing) as err:
        locator.resolve("models/yolox_nano.onnx")
    message = str(err.value)
    for directory in ("first", "second", "cache"):
        assert str(tmp_path / directory / "models" / "yolox_nano.onnx") in message
    assert "cctv data fetch" in message
    assert CATALOGUE["models/yolox_nano.onnx"].url in message


def test_file_without_public_source_points_to_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataFileMissing, match="CCTV_DATA_DIR"):
        _locator(tmp_path).resolve("models/not_in_catalogue.onnx")


def test_detector_with_missing_model_raises_data_file_missing(tmp_path: Path) -> None:
    with pytest.raises(DataFileMissing, match="yolox_nano.onnx not found; looked in"):
        Detector.from_spec("yolox_nano", locator=_locator(tmp_path))


def test_search_dirs_come_before_the_cache(tmp_path: Path) -> None:
    locator = _locator(tmp_path)
    for directory in ("second", "cache"):
        (tmp_path / directory / "media").mkdir(parents=True)
        (tmp_path / directory / "media" / "clip.mp4").write_bytes(directory.encode())
    assert locator.resolve("media/clip.mp4") == tmp_path / "second" / "media" / "clip.mp4"


def test_fetch_keeps_file_with_matching_sha256(tmp_path: Path, model_path) -> None:
    source = model_path("coco_classes.txt")
    locator = _locator(tmp_path)
    fetched = locator.fetch(CATALOGUE[CLASSES], url=source.as_uri())
    assert fetched == tmp_path / "cache" / CLASSES
    assert sha256_of(fetched) == CATALOGUE[CLASSES].sha256
    assert _files(tmp_path) == [fetched]
    assert locator.resolve(CLASSES) == fetched  # later lookups find it in the cache


def test_fetch_with_wrong_sha256_raises_and_leaves_nothing(tmp_path: Path, model_path) -> None:
    source = model_path("coco_classes.txt")
    wrong = dataclasses.replace(CATALOGUE[CLASSES], sha256="0" * 64)
    with pytest.raises(DataFileCorrupt, match="expected 0000"):
        _locator(tmp_path).fetch(wrong, url=source.as_uri())
    assert _files(tmp_path) == []


def test_fetch_from_unreachable_source_raises_missing_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataFileMissing, match="could not download"):
        _locator(tmp_path).fetch(CATALOGUE[CLASSES], url=(tmp_path / "absent.txt").as_uri())
    assert _files(tmp_path) == []
