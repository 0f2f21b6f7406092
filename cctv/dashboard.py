"""The live terminal table of ``cctv demo``: one row per camera (rich)."""

from __future__ import annotations

from rich.table import Table

from cluster.status import CameraState, CameraStatus

_STATE_STYLE = {
    CameraState.ONLINE: "green",
    CameraState.CONNECTING: "yellow",
    CameraState.STALLED: "yellow",
    CameraState.BACKOFF: "yellow",
    CameraState.FAILED: "red",
    CameraState.DISABLED: "dim",
    CameraState.STOPPED: "dim",
}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def camera_table(cameras: list[CameraStatus], title: str) -> Table:
    table = Table(title=title, expand=True)
    for column, justify in [
        ("camera", "left"),
        ("state", "left"),
        ("decoded fps", "right"),
        ("analysed fps", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("detections (total)", "left"),
        ("dropped", "left"),
        ("last error", "left"),
    ]:
        table.add_column(column, justify=justify, overflow="fold")
    for cam in sorted(cameras, key=lambda c: c.camera_id):
        top = sorted(cam.detections_by_class.items(), key=lambda kv: -kv[1])[:4]
        dropped = ", ".join(f"{reason}={n}" for reason, n in cam.dropped.items() if n) or "0"
        table.add_row(
            cam.camera_id + (" (sim)" if cam.simulated else ""),
            f"[{_STATE_STYLE.get(cam.state, '')}]{cam.state}[/]",
            f"{cam.decoded_fps:.1f}",
            f"{cam.analysed_fps:.1f}",
            _ms(cam.latency.p50_ms),
            _ms(cam.latency.p99_ms),
            ", ".join(f"{label} {n}" for label, n in top) or "-",
            dropped,
            (cam.last_error or "")[:80],
        )
    return table
