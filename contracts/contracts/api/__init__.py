"""The public HTTP API of every service, as the gateway exposes it: routes, their scopes and limits.

Each service declares its public routes once, here, next to its events: method, path template (as
the service serves it), the OAuth scopes a caller's token must carry, whether and how a vendor's
app may call it, and the edge limits (timeout, body size, rate). The gateway serves every route at
``/api/<service><path>`` and refuses calls without the scopes before they reach the service; the
service still checks role and organisation itself. Pure data: imports pydantic only.
"""

from contracts.api.routes import (
    API_PREFIX,
    APP_SCHOOLS_HEADER,
    SERVICE_APIS,
    AppAccess,
    HttpMethod,
    RouteSpec,
    ServiceApi,
    TenantLocator,
    service_api,
)

__all__ = [
    "API_PREFIX",
    "APP_SCHOOLS_HEADER",
    "SERVICE_APIS",
    "AppAccess",
    "HttpMethod",
    "RouteSpec",
    "ServiceApi",
    "TenantLocator",
    "service_api",
]
