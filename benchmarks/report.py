"""Writing benchmark results: machine-readable JSON plus a short Markdown summary beside it."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_results(out: Path, result: dict[str, Any], markdown: str) -> Path:
    """Write ``out`` (JSON) and ``out`` with a ``.md`` suffix; returns the Markdown path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info(), **result}, indent=2))
    md_path = out.with_suffix(".md")
    md_path.write_text(markdown)
    return md_path
