"""The shipped Serve config is what `serve deploy` accepts, and its args are what the apps accept."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from serve_apps.detector import DetectorAppArgs

CONFIG = Path(__file__).resolve().parent.parent / "serve_apps" / "serve_config.yaml"


def test_serve_config_validates_against_serves_schema():
    config = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(config)
    names = [app.name for app in schema.applications]
    assert "detector" in names


def test_detector_args_in_the_config_parse():
    config = yaml.safe_load(CONFIG.read_text())
    detector = next(app for app in config["applications"] if app["name"] == "detector")
    args = DetectorAppArgs.model_validate(detector["args"])
    assert args.max_ongoing_requests >= 2  # above the micro-batches that make a model batch
    assert args.autoscaling_policy == "utilisation"
