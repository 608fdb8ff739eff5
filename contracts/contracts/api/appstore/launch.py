"""App store routes: launch.

``/launches`` is called with the user's token. The LTI 1.3 platform endpoints (``/lti/...``) take no platform
token: tools and browsers reach them with LTI's own credentials (one-time launch hints, signed client
assertions, LTI service tokens), which the app store checks itself.
"""

from __future__ import annotations

from contracts.api.routes import RouteSpec

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(method="POST", path="/launches", summary="Launch an installed app (OIDC or LTI 1.3)",
              scopes=("apps.read",), max_body_bytes=4096, rate_limit="60/minute"),
    RouteSpec(method="GET", path="/lti/jwks", summary="The LTI platform's public keys", authenticated=False),
    RouteSpec(method="GET", path="/lti/authorize", summary="LTI 1.3 OIDC authentication request",
              authenticated=False, max_body_bytes=0),
    RouteSpec(method="POST", path="/lti/authorize", summary="LTI 1.3 OIDC authentication request (form post)",
              authenticated=False, max_body_bytes=16_384),
    RouteSpec(method="POST", path="/lti/token", summary="LTI Advantage service token (client credentials)",
              authenticated=False, max_body_bytes=16_384),
    RouteSpec(method="GET", path="/lti/nrps/{deployment_id}/contexts/{context_id}/memberships",
              summary="LTI Names and Role Provisioning: a class's members", authenticated=False),
)  # fmt: skip
