"""Route specifications: what the gateway needs to know about each public route of a service."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.scopes import SCOPES_BY_ID

API_PREFIX = "/api"

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]

#: How a vendor's app (a token whose client is not first-party) may use a route:
#: ``none``: never; ``school``: only for a school that installed the app and granted it the route's
#: scopes, the school being found by ``tenant``; ``open``: any app holding the scopes, because the
#: route serves no school's data (the organisation tree, the resource catalogue); ``installed``: any app
#: holding the scopes, on a route that lists data across schools (a OneRoster collection): the gateway
#: names the schools that installed the app and granted it the route's scopes in ``APP_SCHOOLS_HEADER``
#: and the service returns only their data.
AppAccess = Literal["none", "school", "open", "installed"]

#: Set by the gateway (never by a client: it strips every ``X-Edu-*`` header it receives) on an app's calls
#: to an ``installed`` route (the comma-separated ids of the schools whose data the call may return) and to
#: a ``school`` route (the one school the gateway found installed), so the service confines the app the same
#: way on both.
APP_SCHOOLS_HEADER = "X-Edu-App-Schools"

_PARAMETER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_PATH = re.compile(r"^(/([A-Za-z0-9._~-]+|\{[a-z_][a-z0-9_]*\}))+$|^/$")
_SERVICE = re.compile(r"^[a-z][a-z0-9-]*$")


class TenantLocator(BaseModel):
    """Where in a request the organisation (school) it concerns is named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["path", "query"]
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="The path parameter or query parameter")


class RouteSpec(BaseModel):
    """One public route of a service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: HttpMethod
    path: str = Field(description="Path template as the service serves it, e.g. /people/{person_id}")
    summary: str = Field(min_length=1)
    scopes: tuple[str, ...] = Field(default=(), description="Every scope the access token must carry")
    authenticated: bool = Field(default=True, description="False for routes anyone may call without a token")
    app_access: AppAccess = "none"
    tenant: TenantLocator | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Time the service has to answer")
    max_body_bytes: int = Field(default=1_048_576, ge=0, description="Largest request body accepted")
    rate_limit: str | None = Field(
        default=None,
        description="Per app on this route, in `<n>/<second|minute|hour>` notation; None uses the gateway default",
        pattern=r"^\d+/(second|minute|hour)$",
    )
    websocket: bool = Field(default=False, description="The route is a WebSocket endpoint (GET upgrade)")

    @field_validator("path")
    @classmethod
    def _path_template(cls, value: str) -> str:
        if not _PATH.match(value):
            raise ValueError(f"{value!r} is not a path template: '/'-separated segments or {{parameters}}")
        names = _PARAMETER.findall(value)
        if len(set(names)) != len(names):
            raise ValueError(f"{value!r} repeats a path parameter")
        return value

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [scope for scope in value if scope not in SCOPES_BY_ID]
        if unknown:
            raise ValueError(f"unknown scope(s): {', '.join(unknown)}")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _consistent(self) -> RouteSpec:
        if not self.authenticated and (self.scopes or self.app_access != "none"):
            raise ValueError("a route without authentication can neither require scopes nor admit apps by scope")
        if self.app_access == "school" and self.tenant is None:
            raise ValueError("app_access 'school' needs a tenant locator saying where the school is named")
        if self.tenant is not None and self.tenant.source == "path" and self.tenant.name not in self.path_parameters:
            raise ValueError(f"tenant path parameter {self.tenant.name!r} is not in {self.path!r}")
        if self.app_access != "none" and not all("app" in SCOPES_BY_ID[s].audience for s in self.scopes):
            raise ValueError("a route apps may call can only require scopes apps may be granted")
        if self.websocket and self.method != "GET":
            raise ValueError("a WebSocket route is opened with GET")
        return self

    @property
    def path_parameters(self) -> tuple[str, ...]:
        return tuple(_PARAMETER.findall(self.path))

    @property
    def operation_key(self) -> str:
        return f"{self.method} {self.path}"


class ServiceApi(BaseModel):
    """A service's public API: its routes under ``/api/<service>`` and the paths it serves at the root."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str = Field(pattern=_SERVICE.pattern)
    title: str
    routes: tuple[RouteSpec, ...]
    root_paths: tuple[str, ...] = Field(
        default=(),
        description="Paths forwarded unchanged at the root, without a token check (the identity provider's "
        "OpenID Connect endpoints and sign-in pages); a path ending in '/' covers everything below it",
    )

    @model_validator(mode="after")
    def _unique_routes(self) -> ServiceApi:
        keys = [route.operation_key for route in self.routes]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"routes declared twice: {', '.join(duplicates)}")
        return self

    @property
    def prefix(self) -> str:
        return f"{API_PREFIX}/{self.service}"


def _registry() -> dict[str, ServiceApi]:
    from contracts.api.appstore import APPSTORE_API
    from contracts.api.enrollment import ENROLLMENT_API
    from contracts.api.identity import IDENTITY_API
    from contracts.api.metering import METERING_API

    return {api.service: api for api in (IDENTITY_API, ENROLLMENT_API, APPSTORE_API, METERING_API)}


SERVICE_APIS: dict[str, ServiceApi] = _registry()


def service_api(service: str) -> ServiceApi:
    try:
        return SERVICE_APIS[service]
    except KeyError:
        raise KeyError(f"no public API is declared for service {service!r}; known: {', '.join(SERVICE_APIS)}") from None
