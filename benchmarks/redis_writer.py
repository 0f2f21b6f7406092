"""StreamWriter throughput against raw redis-py XADD, same payloads, same run, same server.

    python -m benchmarks.redis_writer --out results/redis_writer.json   # also writes results/redis_writer.md

Modes (each run on an emptied database, best-of and median of ``--repeats`` reported):
- ``raw_unpipelined``: one XADD per message and round trip (DeepStream's Redis adapter does this);
- ``raw_pipelined``: XADD in pipelines of ``--batch`` messages, payloads serialised beforehand: the limit;
- ``writer``: ``StreamWriter.write`` in calls of ``--batch`` messages, from pydantic models: serialisation,
  shard + per-camera XADD and the per-camera ``last_seq`` update included;
- ``writer_shard_only``: the same with per-camera streams disabled (``camera_maxlen=0``).

``ratio_to_limit`` = writer / raw_pipelined messages/s. Without ``--url`` a private valkey-server is started.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import redis

from cctv.redis_server import RedisServer
from streams import Retention, StreamLayout, StreamWriter
from streams.codec import encode
from streams.samples import synthetic_batch
from streams.schema import DetectionMessage

Mode = Callable[[redis.Redis, list[DetectionMessage]], None]


def _encoded(messages: list[DetectionMessage], layout: StreamLayout) -> list[tuple[str, dict]]:
    now = time.time()
    return [
        (layout.shard_key_of(m.camera_id), encode(m.model_copy(update={"written_ts": now}))) for m in messages
    ]


def _timed(client: redis.Redis, run: Callable[[], None], count: int, repeats: int) -> dict:
    rates, commands = [], {}
    for _ in range(repeats):
        client.flushall()
        client.config_resetstat()
        started = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - started))
        stats = client.info("commandstats")
        # Server-side count of the data commands, to compare modes per command and not only per message.
        commands = {
            name: stats[f"cmdstat_{name}"]["calls"] for name in ("xadd", "hset") if f"cmdstat_{name}" in stats
        }
    median = statistics.median(rates)
    return {
        "messages": count,
        "messages_per_s_median": round(median),
        "messages_per_s_best": round(max(rates)),
        "runs": [round(r) for r in rates],
        "commands_per_message": {name: round(n / count, 3) for name, n in commands.items()},
        "commands_per_s_median": round(median * sum(commands.values()) / count),
    }


def run_benchmark(url: str, messages: int, cameras: int, detections: int, batch: int, repeats: int) -> dict:
    layout, retention = StreamLayout(), Retention()
    payload = synthetic_batch(cameras, max(1, messages // cameras), detections)
    raw = _encoded(payload, layout)
    unpipelined = raw[: min(len(raw), 10_000)]  # ~3k/s: a slice is enough for a stable rate
    client = redis.Redis.from_url(url)
    maxlen = retention.shard_maxlen

    def raw_unpipelined() -> None:
        for key, fields in unpipelined:
            client.xadd(key, fields, maxlen=maxlen, approximate=True)

    def raw_pipelined() -> None:
        for start in range(0, len(raw), batch):
            pipe = client.pipeline(transaction=False)
            for key, fields in raw[start : start + batch]:
                pipe.xadd(key, fields, maxlen=maxlen, approximate=True)
            pipe.execute()

    def writer_mode(writer: StreamWriter) -> Callable[[], None]:
        def run() -> None:
            for start in range(0, len(payload), batch):
                writer.write(payload[start : start + batch])

        return run

    writer = StreamWriter.from_url(url, layout, retention)
    shard_only = StreamWriter.from_url(url, layout, retention.model_copy(update={"camera_maxlen": 0}))
    results = {
        "raw_unpipelined": _timed(client, raw_unpipelined, len(unpipelined), repeats),
        "raw_pipelined": _timed(client, raw_pipelined, len(raw), repeats),
        "writer": _timed(client, writer_mode(writer), len(payload), repeats),
        "writer_shard_only": _timed(client, writer_mode(shard_only), len(payload), repeats),
    }
    # Memory per retained entry, measured on what the last writer run left in Redis.
    client.flushall()
    writer_mode(writer)()
    shard_bytes = sum(client.memory_usage(k, samples=0) for k in layout.shard_keys())
    camera_keys = [layout.camera_stream_key(f"cam-{c:04d}") for c in range(cameras)]
    camera_bytes = sum(client.memory_usage(k, samples=0) or 0 for k in camera_keys)
    info = client.info("server")
    server = f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info.get('redis_version')}"
    writer.close()
    shard_only.close()
    client.close()
    encode_us = _encode_cost_us(payload[:2_000])
    return {
        "config": {
            "messages": len(payload),
            "cameras": cameras,
            "detections_per_message": detections,
            "batch": batch,
            "repeats": repeats,
            "json_bytes_mean": round(statistics.mean(len(f["json"]) for _, f in raw)),
            "shards": layout.shards,
            "retention": retention.model_dump(),
        },
        "environment": {
            "python": platform.python_version(),
            "redis_py": redis.__version__,
            "server": server,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "results": results,
        "ratio_to_limit": round(
            results["writer"]["messages_per_s_median"] / results["raw_pipelined"]["messages_per_s_median"], 3
        ),
        "writer_encode_us_per_message": round(encode_us, 2),
        "memory_bytes_per_entry": {
            "shard_stream": round(shard_bytes / len(payload)),
            "camera_stream": round(camera_bytes / len(payload)),
        },
    }


def _encode_cost_us(messages: list[DetectionMessage]) -> float:
    started = time.perf_counter()
    for m in messages:
        encode(m.model_copy(update={"written_ts": 0.0}))
    return (time.perf_counter() - started) / len(messages) * 1e6


def summary_markdown(report: dict) -> str:
    c, r = report["config"], report["results"]
    rows = "\n".join(
        f"| {mode} | {v['messages_per_s_median']:,} | {v['messages_per_s_best']:,} | "
        f"{' + '.join(f'{n} {name.upper()}' for name, n in v['commands_per_message'].items())} | "
        f"{v['commands_per_s_median']:,} |"
        for mode, v in r.items()
    )
    mem = report["memory_bytes_per_entry"]
    return f"""# Redis writer benchmark

{c["messages"]:,} messages from {c["cameras"]} cameras, {c["detections_per_message"]} detections each
(JSON {c["json_bytes_mean"]} bytes), batches of {c["batch"]}, {c["shards"]} shards,
median of {c["repeats"]} runs.
Server {report["environment"]["server"]}, redis-py {report["environment"]["redis_py"]},
{report["environment"]["cpus"]} CPUs (shared).

| mode | messages/s (median) | best | commands per message | commands/s |
|---|---:|---:|---|---:|
{rows}

- **ratio_to_limit** (writer / raw pipelined): **{report["ratio_to_limit"]}**
- writer encoding cost: {report["writer_encode_us_per_message"]} µs/message
- memory per retained entry: shard stream {mem["shard_stream"]} B, per-camera stream {mem["camera_stream"]} B
- The writer sends two XADD per message (shard + per-camera stream); compare commands/s for the
  cost per command. writer_shard_only keeps `last_seq` with one HSET per camera and call instead.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="StreamWriter vs raw redis-py XADD throughput.")
    parser.add_argument(
        "--out", type=Path, required=True, help="JSON report; a .md summary is written beside it"
    )
    parser.add_argument("--url", help="existing Redis URL (default: start a private valkey-server)")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--cameras", type=int, default=200)
    parser.add_argument("--detections", type=int, default=5, help="detections per message")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    config = (args.messages, args.cameras, args.detections, args.batch, args.repeats)
    if args.url:
        report = run_benchmark(args.url, *config)
    else:
        with RedisServer() as server:
            report = run_benchmark(server.url, *config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(summary_markdown(report))
    print(summary_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
