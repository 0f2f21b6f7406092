#!/usr/bin/env bash
# The README's test command: installs everything the tests need on a fresh machine, then runs
# ruff and the whole pytest suite (real Ray, Serve, Redis, PyAV and ONNX models; ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: GStreamer's RTSP server (a real RTSP peer for the camera tests) and ffmpeg
# (the decode benchmark's baseline). Tests that need them skip with a reason where they are absent.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && ! /usr/bin/python3 -c \
    'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer' 2>/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base \
      gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly ffmpeg >/dev/null) \
    || echo "warning: could not install GStreamer/ffmpeg; RTSP tests will be skipped"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# The PyTorch backend's parity tests run where the CPU wheel is at hand (it is, on this project's
# machines); onnx2torch without its deps, because torchvision does not load beside the CPU build.
if ! .venv/bin/python -c "import torch, onnx2torch" 2>/dev/null; then
  timeout 600 .venv/bin/python -m pip install -q torch==2.13.0 \
    && .venv/bin/python -m pip install -q --no-deps onnx2torch \
    || echo "warning: torch/onnx2torch not installed; the PyTorch backend tests will be skipped"
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Ray's workers inherit this; keep the test cluster small on 2-core machines.
export RAY_DEDUP_LOGS=0
.venv/bin/python -m pytest -q "$@"
