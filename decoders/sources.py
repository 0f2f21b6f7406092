"""How each kind of camera URL is opened with PyAV / FFmpeg 8: target, demuxer options, timeouts.

Timeouts, two layers (both needed, neither alone is enough):

* PyAV ``timeout=(open_s, read_s)`` installs FFmpeg's interrupt callback: ``avformat_open_input`` is
  abandoned after ``open_s`` and each ``av_read_frame`` after ``read_s`` (raises ``av.ExitError``). This
  is what guarantees that a connected-but-silent server (a frozen camera, a SIGSTOPped RTSP server)
  cannot block the decode thread forever.
* The protocol's own socket timeout (microseconds), so the failure carries a meaningful error:
  RTSP ``timeout`` (FFmpeg >= 5 removed ``stimeout``; ``timeout`` is now the socket I/O timeout, not
  the listen timeout), HTTP ``timeout`` and the generic AVIO ``rw_timeout``.

Connect latency: by default ``avformat_find_stream_info`` watches about 20 frames to guess a frame rate
that sampling never uses (we sample by timestamps): 2.0 s to the first frame from a local GStreamer
RTSP server, 0.64 s with ``fpsprobesize=0`` (the rest is waiting for a keyframe). ``analyzeduration``
is capped at 2 s so a 2 s GOP camera without parameter sets in its SDP still yields its first keyframe.
Thousands of cameras reconnecting after a network blip feel this.

Local files get no timeouts (no interrupt callback: it costs a GIL round-trip per poll and a local read
does not hang on the network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from decoders.config import CameraSpec, SourceKind, source_kind  # noqa: F401  (re-exported)


def file_path(url: str) -> Path:
    """``file:///a/b%20c.mp4`` or ``/a/b c.mp4`` -> ``Path('/a/b c.mp4')``."""
    if url.lower().startswith("file://"):
        parts = urlsplit(url)
        netloc = "" if parts.netloc == "localhost" else parts.netloc  # file://clips/a.mp4 -> clips/a.mp4
        return Path(unquote(netloc + parts.path))
    return Path(url)


@dataclass(frozen=True)
class OpenArgs:
    """Everything ``av.open`` needs; ``target`` may hold credentials, so this is never logged."""

    target: str
    kind: SourceKind
    options: dict[str, str] = field(default_factory=dict)
    timeout: tuple[float, float] | None = None

    def __repr__(self) -> str:  # keep credentials out of tracebacks and debug logs
        return f"OpenArgs(kind={self.kind}, options={self.options}, timeout={self.timeout})"


def open_args(spec: CameraSpec) -> OpenArgs:
    url = spec.url.get_secret_value()
    kind = source_kind(url)
    # The read timeout must not exceed the stall timeout, or a silent server would outlive the watchdog.
    read_s = min(spec.read_timeout_s, spec.stall_timeout_s)
    usec = str(int(read_s * 1_000_000))
    probe = {"fpsprobesize": "0", "analyzeduration": "2000000"}
    if kind is SourceKind.FILE:
        return OpenArgs(str(file_path(url)), kind)
    if kind is SourceKind.RTSP:
        options = {
            "rtsp_transport": spec.rtsp_transport,
            "timeout": usec,
            "allowed_media_types": "video",  # do not set up (or decode) audio tracks
            **probe,
        }
        return OpenArgs(url, kind, options, (spec.open_timeout_s, read_s))
    if kind is SourceKind.HTTP:
        # Reconnecting is ours (with backoff and state); FFmpeg's own http reconnect stays off.
        options = {"timeout": usec, "rw_timeout": usec, **probe}
        return OpenArgs(url, kind, options, (spec.open_timeout_s, read_s))
    raise ValueError(f"{spec.camera_id}: sim:// cameras are served by decoders.simulated, not PyAV")
