"""The shipped Serve configs are what `serve deploy` / KubeRay accept, and their args what the apps accept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from ray.serve.schema import ServeDeploySchema

from serve_apps.control_api import ControlAppArgs
from serve_apps.detector import DetectorAppArgs
from serve_apps.face_analyzer import FaceAnalyzerAppArgs
from serve_apps.plate_reader import PlateReaderAppArgs

ROOT = Path(__file__).resolve().parent.parent
ARGS: dict[str, type[BaseModel]] = {
    "serve_apps.detector:build_app": DetectorAppArgs,
    "serve_apps.plate_reader:build_app": PlateReaderAppArgs,
    "serve_apps.face_analyzer:build_app": FaceAnalyzerAppArgs,
    "serve_apps.control_api:app_builder": ControlAppArgs,
}


def _serve_config() -> dict:
    return yaml.safe_load((ROOT / "serve_apps" / "serve_config.yaml").read_text())


def _kuberay_serve_config() -> dict:
    docs = yaml.safe_load_all((ROOT / "deploy" / "kuberay-rayservice.yaml").read_text())
    service = next(d for d in docs if d and d.get("kind") == "RayService")
    return yaml.safe_load(service["spec"]["serveConfigV2"])


@pytest.mark.parametrize("load", [_serve_config, _kuberay_serve_config], ids=["serve_config", "kuberay"])
def test_config_validates_against_serve_and_every_app_s_args(load):
    config = load()
    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        args = ARGS[app["import_path"]].model_validate(app.get("args") or {})
        if hasattr(args, "max_ongoing_requests"):
            assert args.max_ongoing_requests >= 2, app["name"]  # above the requests of a model batch


def test_kuberay_manifest_deploys_the_same_applications():
    names = lambda c: sorted((a["name"], a["import_path"]) for a in c["applications"])  # noqa: E731
    assert names(_kuberay_serve_config()) == names(_serve_config())


def test_detector_uses_the_utilisation_autoscaler():
    detector = next(a for a in _serve_config()["applications"] if a["name"] == "detector")
    assert DetectorAppArgs.model_validate(detector["args"]).autoscaling_policy == "utilisation"
