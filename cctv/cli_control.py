"""``cctv cameras ...`` and ``cctv status``: the control API from the command line.

Mounted into ``cctv/cli.py`` with ``app.add_typer(control_app)`` (its commands join the top level).
The API address and token come from ``--api-url``/``--token`` or the environment (``CCTV_API_URL``,
``CCTV_TOKEN``), read once per command by ``ControlClientSettings``. A camera URL with a password is
better given as ``-`` (read from stdin) or in an import file than on the command line, where shell
history and ``ps`` would see it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Table

from cluster.inventory import InventoryFileError, read_inventory_file
from decoders.config import SamplingMode

control_app = typer.Typer(help="Camera inventory and cluster status (control API).", no_args_is_help=True)
cameras_app = typer.Typer(help="List, add, change, remove and import cameras.", no_args_is_help=True)
control_app.add_typer(cameras_app, name="cameras")

console = Console()


class ControlClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CCTV_", extra="ignore")

    api_url: str = "http://127.0.0.1:8000/control"
    token: SecretStr | None = None


ApiUrl = Annotated[str | None, typer.Option("--api-url", help="Control API base URL [env CCTV_API_URL].")]
Token = Annotated[
    str | None, typer.Option("--token", help="Bearer token [env CCTV_TOKEN].", show_default=False)
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw JSON response.")]
Labels = Annotated[list[str] | None, typer.Option("--label", help="key=value (repeatable).")]


class ApiError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(response.text)


def _client(ctx: typer.Context, api_url: str | None, token: str | None) -> httpx.Client:
    """The HTTP client: injected by tests through ``ctx.obj["http"]``, else built from settings."""
    if isinstance(ctx.obj, dict) and "http" in ctx.obj:
        return ctx.obj["http"]
    settings = ControlClientSettings()
    secret = token or (settings.token.get_secret_value() if settings.token else None)
    if not secret:
        _fail("no token: pass --token or set CCTV_TOKEN")
    base = (api_url or settings.api_url).rstrip("/")
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=60.0)


def _request(client: httpx.Client, method: str, path: str, body: Any = None, **params: Any) -> Any:
    try:
        response = client.request(
            method, path, json=body, params={k: v for k, v in params.items() if v is not None}
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the control API at {client.base_url}: {exc}")
    if response.status_code >= 400:
        raise ApiError(response)
    return response.json() if response.content else None


def _run(
    ctx: typer.Context, api_url: str | None, token: str | None, method: str, path: str, **kw: Any
) -> Any:
    client = _client(ctx, api_url, token)
    try:
        return _request(client, method, path, **kw)
    except ApiError as exc:
        _fail(_describe(exc.response))
    finally:
        if not (isinstance(ctx.obj, dict) and "http" in ctx.obj):
            client.close()


def _describe(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    if isinstance(detail, list):  # field-level validation errors
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in detail)
    return f"HTTP {response.status_code}: {detail}"


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _labels(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    bad = [i for i in items if "=" not in i]
    if bad:
        _fail(f"--label wants key=value, got {bad[0]!r}")
    return dict(i.split("=", 1) for i in items)


def _url(value: str) -> str:
    return sys.stdin.readline().strip() if value == "-" else value


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data))


@cameras_app.command("list")
def cameras_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="online, unreported, unassigned, disabled, ...")] = None,
    group: Annotated[str | None, typer.Option(help="Only this DecoderGroup.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: AsJson = False,
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """List cameras (URLs redacted) with their group and state."""
    page = _run(
        ctx, api_url, token, "GET", "/cameras", state=state, group_id=group, limit=limit, offset=offset
    )
    if as_json:
        _print_json(page)
        return
    table = Table(title=f"cameras {offset + 1}-{offset + len(page['cameras'])} of {page['total']}")
    for column in ("camera", "state", "group", "sampling", "cost", "url"):
        table.add_column(column)
    for view in page["cameras"]:
        cam, status = view["camera"], view["status"] or {}
        sampling = cam["sampling"] if cam["sampling"] != "fps" else f"{cam['fps']:g} fps"
        cost = f"{view['cost']:.3f}{'' if view['cost_measured'] else ' (est)'}"
        state_ = status.get("state") or view["phase"]
        table.add_row(cam["camera_id"], state_, view["group_id"] or "-", sampling, cost, cam["url"])
    console.print(table)


@cameras_app.command("add")
def cameras_add(
    ctx: typer.Context,
    camera_id: Annotated[str, typer.Argument(help="Unique id (letters, digits, _ . -).")],
    url: Annotated[str, typer.Argument(help="Camera URL; '-' reads it from stdin (keeps passwords off ps).")],
    sampling: Annotated[SamplingMode, typer.Option(help="fps, keyframes or all.")] = SamplingMode.FPS,
    fps: Annotated[float, typer.Option(help="Analysis rate when sampling=fps.")] = 2.0,
    label: Labels = None,
    enabled: Annotated[bool, typer.Option("--enabled/--disabled")] = True,
    plates: Annotated[bool, typer.Option(help="Read licence plates.")] = False,
    faces: Annotated[bool, typer.Option(help="Detect faces.")] = False,
    as_json: AsJson = False,
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """Add a camera; it is assigned to a DecoderGroup and starts at once."""
    body = {
        "camera_id": camera_id,
        "url": _url(url),
        "sampling": sampling.value,
        "fps": fps,
        "enabled": enabled,
        "plates": plates,
        "faces": faces,
        "labels": _labels(label) or {},
    }
    view = _run(ctx, api_url, token, "POST", "/cameras", body=body)
    _print_json(view) if as_json else console.print(f"added {camera_id} -> group {view['group_id'] or '-'}")


@cameras_app.command("get")
def cameras_get(
    ctx: typer.Context,
    camera_id: str,
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """One camera: spec (URL redacted), group, cost and last status, as JSON."""
    _print_json(_run(ctx, api_url, token, "GET", f"/cameras/{camera_id}"))


@cameras_app.command("update")
def cameras_update(
    ctx: typer.Context,
    camera_id: str,
    url: Annotated[str | None, typer.Option(help="New URL ('-' reads it from stdin).")] = None,
    sampling: Annotated[SamplingMode | None, typer.Option()] = None,
    fps: Annotated[float | None, typer.Option()] = None,
    label: Labels = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable", show_default=False)] = None,
    plates: Annotated[bool | None, typer.Option("--plates/--no-plates", show_default=False)] = None,
    faces: Annotated[bool | None, typer.Option("--faces/--no-faces", show_default=False)] = None,
    as_json: AsJson = False,
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """Change some fields of a camera (the camera restarts with its new spec)."""
    changes: dict[str, Any] = {
        "url": _url(url) if url is not None else None,
        "sampling": sampling.value if sampling else None,
        "fps": fps,
        "labels": _labels(label),
        "enabled": enabled,
        "plates": plates,
        "faces": faces,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        _fail("nothing to change: give at least one option")
    view = _run(ctx, api_url, token, "PATCH", f"/cameras/{camera_id}", body=changes)
    _print_json(view) if as_json else console.print(f"updated {camera_id} ({', '.join(sorted(changes))})")


@cameras_app.command("rm")
def cameras_rm(ctx: typer.Context, camera_id: str, api_url: ApiUrl = None, token: Token = None) -> None:
    """Remove a camera (its decoding stops)."""
    _run(ctx, api_url, token, "DELETE", f"/cameras/{camera_id}")
    console.print(f"removed {camera_id}")


@cameras_app.command("import")
def cameras_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="YAML or JSON: cameras: [...]")],
    prune: Annotated[bool, typer.Option(help="Remove every camera that is not in the file.")] = False,
    as_json: AsJson = False,
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """Create or update every camera in FILE (validated here first, field by field)."""
    try:
        specs = read_inventory_file(file)
    except InventoryFileError as exc:
        _fail(str(exc))
    body = {"cameras": [s.secret_dict() for s in specs], "prune": prune}
    result = _run(ctx, api_url, token, "POST", "/cameras/_import", body=body)
    if as_json:
        _print_json(result)
        return
    counts = f"{len(result['created'])} created, {len(result['updated'])} updated"
    console.print(
        f"{counts}, {result['unchanged']} unchanged, {len(result['removed'])} removed "
        f"(assignment {result['plan_ms']:.1f} ms)"
    )


@control_app.command("status")
def status(ctx: typer.Context, as_json: AsJson = False, api_url: ApiUrl = None, token: Token = None) -> None:
    """Cluster status: cameras by state, DecoderGroups, recent failovers."""
    data = _run(ctx, api_url, token, "GET", "/status")
    if as_json:
        _print_json(data)
        return
    states = ", ".join(f"{k} {v}" for k, v in data["by_state"].items()) or "-"
    console.print(
        f"[bold]{data['cameras']}[/bold] cameras ({data['enabled']} enabled, {data['assigned']} assigned, "
        f"{data['simulated']} simulated); states: {states}"
    )
    console.print(
        f"controller pid {data['controller_pid']}, RSS {data['controller_rss_bytes'] / 2**20:.0f} MiB"
    )
    table = Table(title=f"{len(data['groups'])} DecoderGroups")
    for column in ("group", "phase", "cameras", "load (CPU s/s)", "node", "status age (s)"):
        table.add_column(column)
    for g in data["groups"]:
        age = "-" if g["status_age_s"] is None else f"{g['status_age_s']:.1f}"
        table.add_row(
            g["group_id"], g["phase"], str(g["cameras"]), f"{g['load']:.3f}", (g["node_id"] or "-")[:12], age
        )
    console.print(table)
    for f in data["failovers"]:
        took = "in progress" if f["reassigned_s"] is None else f"re-placed in {f['reassigned_s']:.2f}s"
        console.print(f"failover: group {f['group_id']} {f['reason']}: {f['cameras']} cameras, {took}")
