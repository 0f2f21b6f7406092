"""The control API: a FastAPI app served as a Ray Serve ingress in front of the controller actor.

Routes (under the application's route prefix, ``/control`` in serve_apps/serve_config.yaml):

=======  ==============================  =====  ==============================================
GET      /healthz                        none   liveness of this replica
GET      /status                         read   cluster status (groups, states, failovers)
GET      /cameras?offset&limit&state     read   cameras, public form (URL redacted)
POST     /cameras                        admin  create (409 if the id exists)
POST     /cameras/_import                admin  create/update many; ``prune`` removes the rest
GET      /cameras/{id}                   read   one camera with its status
GET      /cameras/{id}/status            read   its CameraStatus only
PUT      /cameras/{id}                   admin  create or replace
PATCH    /cameras/{id}                   admin  change some fields
DELETE   /cameras/{id}                   admin  remove (stops decoding)
=======  ==============================  =====  ==============================================

Auth: ``Authorization: Bearer <token>``; an admin token may do everything, a read token only GETs.
Missing or unknown token -> 401 (before the body is even validated), read token on a write -> 403.
Tokens come from the environment (``CCTV_CONTROL_ADMIN_TOKENS`` / ``CCTV_CONTROL_READ_TOKENS``,
comma-separated), read once by ``app_builder``. Only their SHA-256 digests are kept: the deployment's
init arguments are stored by Serve in the GCS, and comparing fixed-length digests with
``hmac.compare_digest`` is constant-time whatever the presented token's length.

Camera credentials never leave: responses carry ``CameraSpec.public_dict()``, and validation errors
are rewritten without ``input``/``ctx`` (FastAPI's default echoes the offending value, e.g. a URL).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from ray import serve

from cluster.control_models import (
    CameraExists,
    CameraList,
    CameraNotFound,
    CameraPatch,
    CameraView,
    ClusterStatus,
    ImportRequest,
    ImportResult,
    InvalidCamera,
    patch_changes,
)
from cluster.controller import ControllerConfig
from cluster.status import CameraStatus
from decoders.config import CameraSpec
from decoders.redact import redact_text


class Role(StrEnum):
    READ = "read"
    ADMIN = "admin"


class ControlPlane(Protocol):
    """What the API needs from the controller (``Controller`` and ``RayControllerClient`` both fit)."""

    def list_cameras(self, **kwargs: Any) -> Awaitable[CameraList]: ...
    def get_camera(self, camera_id: str) -> Awaitable[CameraView]: ...
    def create_camera(self, spec: CameraSpec) -> Awaitable[CameraView]: ...
    def put_camera(self, spec: CameraSpec) -> Awaitable[CameraView]: ...
    def patch_camera(self, camera_id: str, changes: dict[str, Any]) -> Awaitable[CameraView]: ...
    def delete_camera(self, camera_id: str) -> Awaitable[None]: ...
    def import_cameras(self, specs: list[CameraSpec], prune: bool = False) -> Awaitable[ImportResult]: ...
    def cluster_status(self) -> Awaitable[ClusterStatus]: ...


class ControlAPISettings(BaseSettings):
    """Environment of the API (read once, in ``app_builder``)."""

    model_config = SettingsConfigDict(env_prefix="CCTV_CONTROL_", extra="ignore")

    admin_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated admin tokens (at least one, 16+ characters)."
    )
    read_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated read-only tokens."
    )

    @field_validator("admin_tokens", "read_tokens", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("admin_tokens", "read_tokens")
    @classmethod
    def _long_enough(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(len(t.get_secret_value()) < 16 for t in value):
            raise ValueError("tokens must be at least 16 characters")
        return value


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenAuth:
    """Token -> role, by constant-time comparison of SHA-256 digests (tokens themselves are not kept)."""

    admin: tuple[bytes, ...]
    read: tuple[bytes, ...]

    @classmethod
    def from_tokens(cls, admin: Iterable[SecretStr | str], read: Iterable[SecretStr | str] = ()) -> TokenAuth:
        def digests(tokens: Iterable[SecretStr | str]) -> tuple[bytes, ...]:
            return tuple(_digest(t.get_secret_value() if isinstance(t, SecretStr) else t) for t in tokens)

        auth = cls(digests(admin), digests(read))
        if not auth.admin:
            raise ValueError("no admin token configured (set CCTV_CONTROL_ADMIN_TOKENS)")
        return auth

    @classmethod
    def from_settings(cls, settings: ControlAPISettings) -> TokenAuth:
        return cls.from_tokens(settings.admin_tokens, settings.read_tokens)

    def role(self, token: str | None) -> Role | None:
        if not token:
            return None
        presented = _digest(token)
        # Compare against every digest (no early exit), so timing says nothing about which matched.
        is_admin = any([hmac.compare_digest(presented, d) for d in self.admin])
        is_reader = any([hmac.compare_digest(presented, d) for d in self.read])
        return Role.ADMIN if is_admin else Role.READ if is_reader else None


def _safe_error(loc: Iterable[str | int], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": redact_text(msg), "type": type_}


class _Unauthorized(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


def create_app(control: ControlPlane, auth: TokenAuth) -> FastAPI:
    """The FastAPI app, with its controller and auth injected (tests pass an in-process Controller)."""
    app = FastAPI(title="cctv control API", version="1")
    bearer = HTTPBearer(auto_error=False)

    def require(role: Role) -> Callable[..., Role]:
        # A default, not Annotated: with postponed annotations FastAPI cannot see the local `bearer`.
        def check(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Role:
            granted = auth.role(cred.credentials if cred else None)
            if granted is None:
                raise _Unauthorized(401, "missing or invalid bearer token")
            if role is Role.ADMIN and granted is not Role.ADMIN:
                raise _Unauthorized(403, "this token is read-only")
            return granted

        return check

    reader = [Depends(require(Role.READ))]
    admin = [Depends(require(Role.ADMIN))]

    @app.exception_handler(_Unauthorized)
    async def _auth_error(_: Request, exc: _Unauthorized) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_safe_error(e.get("loc", ()), e.get("msg", ""), e.get("type", "")) for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(InvalidCamera)
    async def _invalid_camera(_: Request, exc: InvalidCamera) -> JSONResponse:
        errors = [{**e.model_dump(), "loc": ["body", *e.loc]} for e in exc.errors]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(CameraNotFound)
    async def _not_found(_: Request, exc: CameraNotFound) -> JSONResponse:
        return JSONResponse({"detail": f"no camera {exc.args[0]!r}"}, status_code=404)

    @app.exception_handler(CameraExists)
    async def _exists(_: Request, exc: CameraExists) -> JSONResponse:
        return JSONResponse({"detail": f"camera {exc.args[0]!r} exists; use PUT or PATCH"}, status_code=409)

    @app.exception_handler(ConnectionError)
    async def _unavailable(_: Request, exc: ConnectionError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "2"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status", dependencies=reader)
    async def status() -> ClusterStatus:
        return await control.cluster_status()

    @app.get("/cameras", dependencies=reader)
    async def list_cameras(
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        state: Annotated[str | None, Query(description="e.g. online, unassigned, unreported")] = None,
        group_id: Annotated[str | None, Query()] = None,
    ) -> CameraList:
        return await control.list_cameras(offset=offset, limit=limit, state=state, group_id=group_id)

    @app.post("/cameras", dependencies=admin, status_code=201)
    async def create_camera(spec: CameraSpec) -> CameraView:
        return await control.create_camera(spec)

    @app.post("/cameras/_import", dependencies=admin)
    async def import_cameras(body: ImportRequest) -> ImportResult:
        return await control.import_cameras(body.cameras, body.prune)

    @app.get("/cameras/{camera_id}", dependencies=reader)
    async def get_camera(camera_id: str) -> CameraView:
        return await control.get_camera(camera_id)

    @app.get("/cameras/{camera_id}/status", dependencies=reader)
    async def get_camera_status(camera_id: str) -> CameraStatus | None:
        return (await control.get_camera(camera_id)).status

    @app.put("/cameras/{camera_id}", dependencies=admin)
    async def put_camera(camera_id: str, spec: CameraSpec) -> CameraView:
        if spec.camera_id != camera_id:
            error = _safe_error(("body", "camera_id"), "must match the id in the path", "value_error")
            raise RequestValidationError([error])
        return await control.put_camera(spec)

    @app.patch("/cameras/{camera_id}", dependencies=admin)
    async def patch_camera(camera_id: str, patch: CameraPatch) -> CameraView:  # type: ignore[valid-type]
        return await control.patch_camera(camera_id, patch_changes(patch))

    @app.delete("/cameras/{camera_id}", dependencies=admin, status_code=204)
    async def delete_camera(camera_id: str) -> Response:
        await control.delete_camera(camera_id)
        return Response(status_code=204)

    return app


class ControlAppArgs(BaseModel):
    """The ``args:`` block of the control application in the Serve config."""

    model_config = ConfigDict(extra="forbid")

    controller_name: str = Field("cctv-controller", description="Name of the controller actor.")
    namespace: str = Field("cctv", description="Ray namespace of the controller and its groups.")
    num_cpus: float = Field(0.1, gt=0, description="CPUs per API replica (it only forwards calls).")
    num_replicas: int = Field(1, ge=1, description="API replicas.")
    controller: ControllerConfig | None = Field(
        None,
        description="Start the controller with this config if it is not running (on the head node). "
        "None: it is started elsewhere (cluster.ray_layer.start_controller).",
    )


@serve.deployment(name="ControlAPI")
@serve.ingress()
class ControlAPIDeployment:
    """Serve ingress; the FastAPI app is built per replica (``__serve_build_asgi_app__``)."""

    async def __init__(self, auth: TokenAuth, args: dict[str, Any]) -> None:
        from cluster.ray_layer import RayControllerClient, ensure_controller

        parsed = ControlAppArgs.model_validate(args)
        if parsed.controller is not None:  # idempotent: an existing controller is kept as it is
            await ensure_controller(parsed.controller, parsed.controller_name, parsed.namespace)
        self._app = create_app(RayControllerClient(parsed.controller_name, parsed.namespace), auth)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._app


def app_builder(args: dict[str, Any] | None = None) -> serve.Application:
    """Entry point (``import_path: serve_apps.control_api:app_builder``): reads the tokens, binds."""
    parsed = ControlAppArgs.model_validate(args or {})
    auth = TokenAuth.from_settings(ControlAPISettings())
    deployment = ControlAPIDeployment.options(
        num_replicas=parsed.num_replicas, ray_actor_options={"num_cpus": parsed.num_cpus}
    )
    return deployment.bind(auth, parsed.model_dump(mode="json"))
