"""Generates docs/configuration.md from the pydantic models: the schema is the documentation.

``python -m cctv.config_docs`` rewrites the file; ``--check`` exits 1 if it is stale (a test runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _models() -> list[tuple[str, str, type[BaseModel]]]:
    from autoscale.utilisation import UtilisationParams
    from cctv.demo import DemoOptions
    from cluster.decoder_group import GroupConfig
    from cluster.second_stage import SecondStageConfig
    from decoders.config import BackoffPolicy, CameraSpec
    from models.backends.auto import AutoConfig
    from models.backends.onnxruntime import OnnxRuntimeConfig
    from models.backends.tensorrt import TensorRTConfig
    from models.backends.torch_cuda import TorchConfig
    from models.face import FaceAnalyzerConfig, FaceEmbedderConfig
    from models.plate import PlateReaderConfig
    from serve_apps.detector import DetectorAppArgs
    from serve_apps.face_analyzer import FaceAnalyzerAppArgs
    from serve_apps.plate_reader import PlateReaderAppArgs
    from streams.keys import Retention, StreamLayout

    return [
        (
            "Camera (`CameraSpec`)",
            "decoders/config.py: one per camera, via the control API, an import file or the demo.",
            CameraSpec,
        ),
        ("Reconnect policy (`BackoffPolicy`)", "decoders/config.py: `CameraSpec.reconnect`.", BackoffPolicy),
        (
            "DecoderGroup (`GroupConfig`)",
            "cluster/decoder_group.py: one per DecoderGroup actor.",
            GroupConfig,
        ),
        (
            "Detector application (`DetectorAppArgs`)",
            "serve_apps/detector.py: the `args` of the `detector` app in serve_apps/serve_config.yaml.",
            DetectorAppArgs,
        ),
        (
            "Utilisation autoscaler (`UtilisationParams`)",
            "autoscale/utilisation.py: `DetectorAppArgs.utilisation`.",
            UtilisationParams,
        ),
        (
            "ONNX Runtime backend (`OnnxRuntimeConfig`)",
            "models/backends/onnxruntime.py: `backend: {type: onnxruntime}`.",
            OnnxRuntimeConfig,
        ),
        (
            "TensorRT backend (`TensorRTConfig`)",
            "models/backends/tensorrt.py: `backend: {type: tensorrt}`.",
            TensorRTConfig,
        ),
        (
            "PyTorch backend (`TorchConfig`)",
            "models/backends/torch_cuda.py: `backend: {type: torch}`.",
            TorchConfig,
        ),
        ("Automatic backend (`AutoConfig`)", "models/backends/auto.py: `backend: {type: auto}`.", AutoConfig),
        (
            "Plate reader application (`PlateReaderAppArgs`)",
            "serve_apps/plate_reader.py: the `args` of the `plates` app in serve_apps/serve_config.yaml.",
            PlateReaderAppArgs,
        ),
        (
            "Plate reader (`PlateReaderConfig`)",
            "models/plate.py: `PlateReaderAppArgs.reader`.",
            PlateReaderConfig,
        ),
        (
            "Face analyzer application (`FaceAnalyzerAppArgs`)",
            "serve_apps/face_analyzer.py: the `args` of the `faces` app in serve_apps/serve_config.yaml.",
            FaceAnalyzerAppArgs,
        ),
        (
            "Face analyzer (`FaceAnalyzerConfig`)",
            "models/face.py: `FaceAnalyzerAppArgs.analyzer`.",
            FaceAnalyzerConfig,
        ),
        (
            "Face embedder (`FaceEmbedderConfig`)",
            "models/face.py: `FaceAnalyzerConfig.embedder`.",
            FaceEmbedderConfig,
        ),
        (
            "Second stages (`SecondStageConfig`)",
            "cluster/second_stage.py: crops, face messages and embeddings.",
            SecondStageConfig,
        ),
        (
            "Stream layout (`StreamLayout`)",
            "streams/keys.py: shared by every producer and consumer.",
            StreamLayout,
        ),
        ("Stream retention (`Retention`)", "streams/keys.py.", Retention),
        ("Demo (`DemoOptions`)", "cctv/demo.py: the options of `cctv demo`.", DemoOptions),
    ]


def _type_of(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_type_of(p) for p in prop["anyOf"])
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if prop.get("type") == "array":
        return f"list of {_type_of(prop.get('items', {}))}"
    return str(prop.get("type", prop.get("format", "any")))


def _default(name: str, model: type[BaseModel]) -> str:
    field = model.model_fields[name]
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        if not isinstance(field.default_factory, type):
            return "(computed at start)"
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
        return f"`{value.model_dump(mode='json') if isinstance(value, BaseModel) else value}`"
    return f"`{field.default}`"


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models by `python -m cctv.config_docs`; do not edit by hand.",
        "Every model rejects unknown fields; a bad value is reported with the field's name and the problem.",
        "Environment: `CCTV_DATA_DIR` (models and clips; else `../shared/data`, then the download cache),",
        "`REDIS_URL` (`cctv demo` and `cctv tail`).",
        "",
    ]
    for title, where, model in _models():
        schema = model.model_json_schema()
        lines += [
            f"## {title}",
            "",
            where,
            "",
            "| field | type | default | description |",
            "|---|---|---|---|",
        ]
        for name, prop in schema.get("properties", {}).items():
            description = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
            constraints = [
                f"{k} {prop[k]}"
                for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "pattern")
                if k in prop
            ]
            if constraints:
                description += f" ({', '.join(constraints)})".replace("|", "\\|")
            lines.append(f"| `{name}` | {_type_of(prop)} | {_default(name, model)} | {description} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is stale: run python -m cctv.config_docs", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
