"""Where models and clips come from: resolved at run time, never committed.

Lookup order: ``$CCTV_DATA_DIR``, then ``../shared/data`` beside the checkout (and beside the
current directory), then the download cache. A missing file can be fetched from its public source
and is accepted only if its sha256 matches; otherwise the error lists where we looked and how to
get the file. Provenance and licences: ``../shared/data/SOURCES.md``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_GH = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to the data directory, e.g. "models/yolox_nano.onnx"
    sha256: str
    url: str | None  # public source (pinned commit); None where no byte-identical public copy exists


CATALOGUE: dict[str, DataFile] = {
    f.path: f
    for f in [
        DataFile(
            "models/yolox_nano.onnx",
            "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
            f"{_GH}/Kazuhito00/YOLOX-ONNX-TFLite-Sample/0f785c070ce8da070aeaeef46c0da7904ff7012e/model/yolox_nano.onnx",
        ),
        DataFile(
            "models/coco_classes.txt",
            "634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84",
            f"{_GH}/Kazuhito00/YOLOX-ONNX-TFLite-Sample/ac07155e3ac8a531d89d24204e50f364d3444275/coco_classes.txt",
        ),
        DataFile(
            "models/face_detection_yunet_2023mar.onnx",
            "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            f"{_GH}/AlexanderBgit/PlateN/549e246044210ecc0e2ed7168c14c3a4cca5b383/"
            "BACKEND/api/services/face_detection/models/face_detection_yunet_2023mar.onnx",
        ),
        DataFile(
            "models/license_plate_detection_lpd_yunet_2023mar.onnx",
            "6d4978a7b6d25514d5e24811b82bfb511d166bdd8ca3b03aa63c1623d4d039c7",
            f"{_GH}/AlexanderBgit/PlateN/728d151e024e3b7b8dc6de3e4b4d53091155bf9f/"
            "BACKEND/api/services/plate_detection/models/license_plate_detection_lpd_yunet_2023mar.onnx",
        ),
        DataFile(
            "models/cct_xs_v1_global.onnx",
            "c1ae2ae031b10f8ab7ed6e3cdaf8d9c753477e299dbad3579c8f705a7d882134",
            f"{_GH}/NateMccomb/TeslaCamViewer/ef7496bb6b021a13bd62ceb0a01d19a131101829/vendor/models/cct_xs_v1_global.onnx",
        ),
        DataFile(
            "media/opencv_vtest_480x360.avi",
            "f6f676f1879eadf6b22abd0c2a1f6cecb5ae1ff2a63625512310356514048c5d",
            f"{_GH}/arjun-234/OpenCVTutorial/3d595320fba51d85a6dba3895e3b8a4b7e329776/vtest.avi",
        ),
        DataFile(
            "media/meva_school_G330_annotated.mp4",
            "f4b193e92d4c5f03a15a52e3bd22f47cf61b871089fe5628767b187c20cd4eb0",
            f"{_GH}/Kitware/mevadata/90ea4287f6c69894b63ace0a24fdfc962a9f0f6c/"
            "video/2018-03-11.16-20-00.16-25-00.school.G330.annotated.mp4",
        ),
        DataFile(
            "media/intel_car-detection.mp4",
            "d31e0ebf194cc16e50eea784e7c3b0b1bb7976a4fb9b3fec26cb92a6704cca34",
            f"{_GH}/intel-iot-devkit/sample-videos/e9ab59cac368a61f7741a2373d7e79607c2f5e44/car-detection.mp4",
        ),
        DataFile(
            "media/intel_person-bicycle-car-detection.mp4",
            "ff6419d711e39419b00f40f37bf2ea8310319c567a6394c0b03601ec64340bc2",
            f"{_GH}/shehryarusman/Final_Project/7601d24ebc47ea1275a06cd17ac84815cccf2c54/person-bicycle-car-detection.mp4",
        ),
        DataFile(
            "media/intel_face-demographics-walking-and-pause_preview.mp4",
            "5d50cff1aaa78e0bbaae605b8fecac37f8e4510634610a958fa878fd787e4b63",
            None,  # transcoded from Intel's GIF preview; see SOURCES.md
        ),
        DataFile(
            "media/faces_two_people.jpg",
            "536b29cd513fb618e4d5aa79d51a279948daa804ce359463449cce5f9dc68aa7",
            f"{_GH}/ageitgey/face_recognition/112d636609de01c8623366d056a67a8a1d798675/examples/two_people.jpg",
        ),
        DataFile(
            "media/face_obama.jpg",
            "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
            f"{_GH}/ageitgey/face_recognition/e15120e6ba08cde1216607d2eb27e0eb0f0ea37c/examples/obama.jpg",
        ),
        DataFile(
            "media/face_obama2.jpg",
            "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
            f"{_GH}/ageitgey/face_recognition/e15120e6ba08cde1216607d2eb27e0eb0f0ea37c/examples/obama2.jpg",
        ),
        DataFile(
            "media/face_biden.jpg",
            "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
            f"{_GH}/ageitgey/face_recognition/e15120e6ba08cde1216607d2eb27e0eb0f0ea37c/examples/biden.jpg",
        ),
        DataFile(
            "media/plate_car_parking.png",
            "c154c3e0873fa35076ecf4f611d345c092450217fe75737b2a77183018218255",
            f"{_GH}/ankandrew/fast-alpr/bf53beb74bcf20ae42571da173b8c66cb4ee7526/assets/test_image.png",
        ),
        DataFile(
            "media/plate_crop_AD799KB.png",
            "672948ed215afed96f244d170237008e44a9562ac9b1d90d095f5bf4bd44baf2",
            f"{_GH}/ankandrew/fast-plate-ocr/e23b24e700be8cc76232c313dfc1a5fe16306b06/test/assets/test_plate_1.png",
        ),
        DataFile(
            "media/plate_crop_KRW301.png",
            "4fafff8be04b3b94d7a9a6ffa39c74a74fa9099ad8633f50db0886c9d4a18005",
            f"{_GH}/ankandrew/fast-plate-ocr/e23b24e700be8cc76232c313dfc1a5fe16306b06/test/assets/test_plate_2.png",
        ),
    ]
}

# The clips `cctv demo` plays as cameras, in the order cameras are assigned to them.
DEMO_CLIPS = (
    "media/opencv_vtest_480x360.avi",
    "media/meva_school_G330_annotated.mp4",
    "media/intel_person-bicycle-car-detection.mp4",
    "media/intel_car-detection.mp4",
)


class DataFileMissing(FileNotFoundError):
    """A model or clip is not in any data directory and could not be fetched."""


class DataFileCorrupt(ValueError):
    """A fetched file's sha256 does not match the catalogue."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cctv-analytics" / "data"


@dataclass(frozen=True)
class DataLocator:
    """Resolves data files against an ordered list of directories plus a download cache."""

    search_dirs: tuple[Path, ...]
    cache_dir: Path

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike | None = None) -> DataLocator:
        """Build from an explicit directory or ``$CCTV_DATA_DIR``, then the ``shared/data`` conventions."""
        dirs: list[Path] = []
        explicit = data_dir or os.environ.get("CCTV_DATA_DIR")
        if explicit:
            dirs.append(Path(explicit).expanduser())
        repo_root = Path(__file__).resolve().parent.parent
        for candidate in (repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
            if candidate not in dirs:
                dirs.append(candidate)
        return cls(tuple(dirs), default_cache_dir())

    def find(self, relpath: str) -> Path | None:
        for directory in (*self.search_dirs, self.cache_dir):
            candidate = directory / relpath
            if candidate.is_file():
                return candidate
        return None

    def resolve(self, relpath: str, fetch: bool = False) -> Path:
        """The local path of ``relpath``; with ``fetch``, download it from its public source first."""
        found = self.find(relpath)
        if found is not None:
            return found
        entry = CATALOGUE.get(relpath)
        if fetch and entry is not None and entry.url is not None:
            return self.fetch(entry)
        looked = ", ".join(str(d / relpath) for d in (*self.search_dirs, self.cache_dir))
        how = (
            f"run `cctv data fetch` to download it from {entry.url} (sha256-checked)"
            if entry is not None and entry.url
            else "set CCTV_DATA_DIR to a copy of the project's shared/data directory (see its SOURCES.md)"
        )
        raise DataFileMissing(f"{relpath} not found; looked in: {looked}. To get it: {how}.")

    def fetch(self, entry: DataFile, url: str | None = None) -> Path:
        """Download into the cache, keeping the file only if its sha256 matches."""
        source = url or entry.url
        if source is None:
            raise DataFileMissing(f"{entry.path} has no public source; set CCTV_DATA_DIR (see SOURCES.md)")
        target = self.cache_dir / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp_path = Path(tmp.name)
            try:
                with urllib.request.urlopen(source, timeout=60) as response:
                    shutil.copyfileobj(response, tmp)
            except OSError as exc:
                tmp_path.unlink(missing_ok=True)
                raise DataFileMissing(f"could not download {entry.path} from {source}: {exc}") from exc
        actual = sha256_of(tmp_path)
        if actual != entry.sha256:
            tmp_path.unlink(missing_ok=True)
            raise DataFileCorrupt(f"{entry.path} from {source} has sha256 {actual}, expected {entry.sha256}")
        tmp_path.replace(target)
        return target
