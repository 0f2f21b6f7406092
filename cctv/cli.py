"""The ``cctv`` command: demo, tail, benchmarks, data and schema tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from cctv.cli_control import control_app

app = typer.Typer(help="City-scale CCTV analytics on Ray.", no_args_is_help=True, add_completion=False)
bench_app = typer.Typer(
    help="Benchmarks: JSON + Markdown results next to the limit measured in the same run."
)
data_app = typer.Typer(help="Models and clips (resolved at run time, never committed).")
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")
app.add_typer(control_app)  # `cctv cameras ...` and `cctv status` (control API clients)

console = Console(emoji=False)  # keys like "cctv:camera:{x}" are not emoji codes


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@app.command()
def demo(
    cameras: Annotated[int, typer.Option(help="Number of cameras (real clips played as live cameras).")] = 4,
    fps: Annotated[float, typer.Option(help="Analysis rate per camera.")] = 2.0,
    sampling: Annotated[str, typer.Option(help="fps | keyframes | all")] = "fps",
    duration: Annotated[float | None, typer.Option(help="Seconds to run (default: until Ctrl-C).")] = None,
    redis_url: Annotated[
        str | None, typer.Option(envvar="REDIS_URL", help="Use this Redis instead of an embedded server.")
    ] = None,
    summary_json: Annotated[Path | None, typer.Option(help="Write final per-camera figures here.")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where the embedded Redis saves its data.")] = Path(
        "cctv-demo-results"
    ),
    cameras_per_group: Annotated[int, typer.Option(help="Cameras per DecoderGroup actor.")] = 8,
    data_dir: Annotated[Path | None, typer.Option(envvar="CCTV_DATA_DIR", help="Models and clips.")] = None,
) -> None:
    """Run the whole pipeline locally: Ray, Serve, an embedded Redis, real clips as cameras."""
    from cctv.demo import DemoOptions, run_demo
    from models.data import DataFileMissing

    try:
        options = DemoOptions(
            cameras=cameras,
            fps=fps,
            sampling=sampling,
            duration_s=duration,
            redis_url=redis_url,
            summary_json=summary_json,
            results_dir=results_dir,
            cameras_per_group=cameras_per_group,
            data_dir=data_dir,
        )
    except ValidationError as exc:
        _fail(_format_validation(exc))
    try:
        run_demo(options, console)
    except DataFileMissing as exc:
        _fail(str(exc))


@app.command()
def tail(
    redis_url: Annotated[str | None, typer.Option(envvar="REDIS_URL", help="Redis to read.")] = None,
    dump: Annotated[Path | None, typer.Option(help="Read a saved demo dump (starts a server on it).")] = None,
    camera: Annotated[str | None, typer.Option(help="Follow one camera only.")] = None,
    follow: Annotated[bool, typer.Option(help="Keep following new messages.")] = True,
    count: Annotated[int, typer.Option(help="Messages to show first.")] = 20,
) -> None:
    """Follow detection messages from the Redis streams."""
    from cctv.redis_server import RedisServer
    from streams.tail import run_tail

    if dump is not None:
        if not dump.is_file():
            _fail(f"{dump} does not exist")
        with RedisServer(dump_file=dump) as server:
            run_tail(server.url, camera_id=camera, follow=follow, count=count, console=console)
        return
    if redis_url is None:
        _fail("give --redis-url (or REDIS_URL) or --dump FILE")
    run_tail(redis_url, camera_id=camera, follow=follow, count=count, console=console)


@bench_app.command("pipeline")
def bench_pipeline(
    out: Annotated[Path, typer.Option(help="JSON result file (a .md summary is written beside it).")],
    cameras: Annotated[int, typer.Option(help="Cameras decoded as fast as possible.")] = 4,
    fps: Annotated[float, typer.Option(help="Sampling rate per camera (by presentation time).")] = 5.0,
    duration: Annotated[float, typer.Option(help="Seconds of steady-state measurement.")] = 30.0,
) -> None:
    """Analysed frames/s and CPU-s per frame vs decode-only and model-only costs in the same run."""
    from benchmarks.pipeline import PipelineBenchOptions, run

    run(PipelineBenchOptions(out=out, cameras=cameras, fps=fps, duration_s=duration), console)


def _delegate(name: str, module: str, summary: str) -> None:
    """``cctv bench NAME ARGS`` runs ``python -m MODULE ARGS`` (each benchmark owns its options)."""

    @bench_app.command(
        name,
        help=f"{summary} Options: see `python -m {module} --help` (e.g. --out FILE.json).",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def command(ctx: typer.Context) -> None:
        import importlib

        raise typer.Exit(importlib.import_module(module).main(list(ctx.args)) or 0)


_delegate(
    "decode",
    "benchmarks.decode",
    "Decoded frames per CPU-second vs ffmpeg -threads 1; keyframes cameras/core.",
)
_delegate("models", "benchmarks.models", "Images/s per model, backend and batch size; Serve-batched vs raw.")
_delegate("redis", "benchmarks.redis_writer", "Stream writer messages/s vs raw (pipelined) XADD.")
_delegate(
    "scale", "benchmarks.scale", "10,000 simulated cameras: assignment time, controller memory, API latency."
)


@data_app.command("fetch")
def data_fetch() -> None:
    """Download every model and clip that is not found locally, checking sha256."""
    from models.data import CATALOGUE, DataFileMissing, DataLocator

    locator = DataLocator.from_env()
    failed = 0
    for relpath in CATALOGUE:
        try:
            console.print(f"{relpath}: {locator.resolve(relpath, fetch=True)}")
        except (DataFileMissing, ValueError) as exc:
            failed += 1
            console.print(f"[red]{exc}[/red]")
    if failed:
        raise typer.Exit(1)


@data_app.command("where")
def data_where() -> None:
    """Show where each data file resolves (or that it is missing)."""
    from models.data import CATALOGUE, DataLocator

    locator = DataLocator.from_env()
    for relpath in CATALOGUE:
        console.print(f"{relpath}: {locator.find(relpath) or '[red]missing[/red]'}")


def _format_validation(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


def main() -> None:  # pragma: no cover
    sys.exit(app())
