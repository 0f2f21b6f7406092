"""Write the published JSON Schema files: ``python -m streams.export_schema [--check] [--out DIR]``.

The files under ``streams/schema/`` are committed so that consumers in any language can validate
messages without Python; a test fails when they no longer match the models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from streams.schema import (
    SCHEMA_VERSION,
    STREAM_MESSAGE,
    CameraStateMessage,
    DetectionMessage,
    FaceMatchMessage,
    PlateReadMessage,
)

SCHEMA_DIR = Path(__file__).parent / "schema"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _document(name: str, schema: dict, title: str) -> dict:
    # mode="serialization": describes what is on the wire, where every field is present.
    return {"$schema": _DIALECT, "$id": f"urn:cctv-analytics:streams:{name}", "title": title, **schema}


def schemas() -> dict[str, dict]:
    """File name -> JSON Schema document, for every published message schema of this version."""
    v = SCHEMA_VERSION
    models: dict[str, type[BaseModel]] = {
        "detections": DetectionMessage,
        "camera_state": CameraStateMessage,
        "plate_read": PlateReadMessage,
        "face_match": FaceMatchMessage,
    }
    documents = {
        f"{kind}.v{v}.json": _document(
            f"{kind}:v{v}", model.model_json_schema(mode="serialization"), model.__name__
        )
        for kind, model in models.items()
    }
    union = STREAM_MESSAGE.json_schema(mode="serialization")
    documents[f"stream_message.v{v}.json"] = _document(f"stream_message:v{v}", union, "StreamMessage")
    return documents


def render(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    return [
        name
        for name, document in schemas().items()
        if not (directory / name).is_file() or (directory / name).read_text() != render(document)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=SCHEMA_DIR, help="directory to write (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, document in schemas().items():
        (args.out / name).write_text(render(document))
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
