"""``cctv tail``: print recent messages, then follow new ones, one line per message.

It reads with plain XREVRANGE/XREAD, not a consumer group: watching the streams must not create
groups or pending entries that nobody acks.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import redis
from rich.console import Console
from rich.text import Text

from streams.keys import DETECTIONS, StreamLayout
from streams.reader import ReceivedMessage, to_received
from streams.schema import CameraStateMessage, DetectionMessage

_BLOCK_MS = 1000  # follow loop wakes up this often to check `stop`


def run_tail(
    url: str,
    camera_id: str | None = None,
    *,
    follow: bool = True,
    count: int = 20,
    console: Console | None = None,
    layout: StreamLayout | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Print the last ``count`` messages (one camera, or all shards), then new ones while ``follow``.

    Following ends on Ctrl-C or when ``stop`` is set. Returns the number of messages printed.
    """
    console = console or Console(emoji=False)
    layout = layout or StreamLayout()
    stop = stop or threading.Event()
    if camera_id is not None:
        keys = [layout.camera_stream_key(camera_id, DETECTIONS)]
        _print_state(console, url, layout, camera_id)
    else:
        keys = layout.shard_keys(DETECTIONS)
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=_BLOCK_MS / 1000 + 5)
    try:
        last_ids, recent = _recent(client, keys, count)
        for item in recent:
            console.print(format_line(item))
        printed = len(recent)
        while follow and not stop.is_set():
            reply = client.xread(last_ids, count=500, block=_BLOCK_MS) or []
            for key, entries in reply:
                for entry_id, fields in entries:
                    console.print(format_line(to_received(key, entry_id, fields)))
                    last_ids[key] = entry_id
                    printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return printed


def _recent(client: redis.Redis, keys: list[str], count: int) -> tuple[dict[str, str], list[ReceivedMessage]]:
    """The newest ``count`` entries over ``keys`` (oldest first) and each key's newest id to follow from."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.xrevrange(key, count=max(count, 1))
    last_ids: dict[str, str] = {}
    entries: list[tuple[tuple[int, int], str, str, dict[str, str]]] = []
    for key, reply in zip(keys, pipe.execute(), strict=True):
        last_ids[key] = reply[0][0] if reply else "0-0"
        entries.extend((_id_order(entry_id), key, entry_id, fields) for entry_id, fields in reply)
    entries.sort(key=lambda item: item[0])
    chosen = entries[-count:] if count > 0 else []
    return last_ids, [to_received(key, entry_id, fields) for _, key, entry_id, fields in chosen]


def _id_order(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


def format_line(item: ReceivedMessage) -> Text:
    """``12:00:01.250 cam-1 #42 frame 1200 1920x1080 3 det car×2 person×1 lat 45ms yolox/onnxruntime``."""
    message = item.message
    if not isinstance(message, DetectionMessage):
        reason = item.error or f"kind {getattr(message, 'kind', '?')}"
        return Text(f"{item.stream} {item.entry_id} not shown: {reason}", style="red")
    ts = message.written_ts or message.capture_ts
    clock = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"
    classes = Counter(d.label for d in message.detections)
    summary = " ".join(f"{label}×{n}" for label, n in classes.most_common())
    latency = (
        f"lat {(message.written_ts - message.capture_ts) * 1000:.0f}ms"
        if message.written_ts is not None
        else ""
    )
    return Text.assemble(
        (clock, "dim"),
        " ",
        (message.camera_id, "bold cyan"),
        f" #{message.seq} frame {message.frame_index} {message.frame_width}x{message.frame_height} ",
        (f"{len(message.detections)} det", "bold"),
        f" {summary}" if summary else "",
        f"  {latency}" if latency else "",
        (f"  {message.model}/{message.backend}", "dim"),
        ("  [simulated]", "yellow") if message.simulated else "",
    )


def _print_state(console: Console, url: str, layout: StreamLayout, camera_id: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    try:
        raw = client.hget(layout.state_key(camera_id), "json")
    finally:
        client.close()
    if raw is None:
        console.print(Text(f"{camera_id}: no state reported", style="dim"))
        return
    try:
        state = CameraStateMessage.model_validate_json(raw)
    except ValueError as exc:  # a newer schema version: say so, keep tailing
        console.print(Text(f"{camera_id}: state not readable by this version: {exc}", style="red"))
        return
    c = state.counters
    dropped = ", ".join(f"{reason}={n}" for reason, n in c.dropped.items()) or "none"
    console.print(
        Text.assemble(
            (state.camera_id, "bold cyan"),
            f" {state.state.value} group={state.group_id} decoded={c.frames_decoded} "
            f"analysed={c.frames_analysed} reconnects={c.reconnects} dropped: {dropped}",
            (f"  last error: {state.last_error}", "red") if state.last_error else "",
        )
    )
