"""App store routes: the web pages (应用超市门户).

The pages sign people in through identity themselves (authorization code with PKCE) and keep their own session
cookie, so the gateway passes them through without a token; the app store checks the session, the person's roles
and the scopes of the access token identity issued, exactly as on its API.
"""

from __future__ import annotations

from contracts.api.routes import RouteSpec

_FORM = 16_384

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(method="GET", path="/portal", summary="我的应用: the signed-in person's installed apps",
              authenticated=False, max_body_bytes=0),
    RouteSpec(method="GET", path="/portal/login", summary="Start signing in at identity (code + PKCE)",
              authenticated=False, max_body_bytes=0, rate_limit="30/minute"),
    RouteSpec(method="GET", path="/portal/callback", summary="Identity's sign-in answer", authenticated=False,
              max_body_bytes=0, rate_limit="30/minute"),
    RouteSpec(method="POST", path="/portal/logout", summary="Sign out", authenticated=False, max_body_bytes=_FORM),
    RouteSpec(method="POST", path="/portal/launch", summary="Open an installed app", authenticated=False,
              max_body_bytes=_FORM, rate_limit="60/minute"),
    RouteSpec(method="GET", path="/portal/catalog", summary="Search the catalog", authenticated=False,
              max_body_bytes=0),
    RouteSpec(method="GET", path="/portal/catalog/{app_id}", summary="An app: what data it gets and why",
              authenticated=False, max_body_bytes=0),
    RouteSpec(method="POST", path="/portal/catalog/{app_id}/install", summary="Install the app at a school",
              authenticated=False, max_body_bytes=_FORM),
    RouteSpec(method="POST", path="/portal/catalog/{app_id}/request", summary="A teacher requests the app",
              authenticated=False, max_body_bytes=_FORM),
    RouteSpec(method="GET", path="/portal/school/{school_id}/apps", summary="A school's apps and teachers' requests",
              authenticated=False, max_body_bytes=0),
    RouteSpec(method="POST", path="/portal/school/{school_id}/apps/{installation_id}/uninstall",
              summary="Uninstall an app", authenticated=False, max_body_bytes=_FORM),
    RouteSpec(method="POST", path="/portal/school/{school_id}/requests/{request_id}/approve",
              summary="Approve a teacher's request", authenticated=False, max_body_bytes=_FORM),
    RouteSpec(method="POST", path="/portal/school/{school_id}/requests/{request_id}/decline",
              summary="Decline a teacher's request", authenticated=False, max_body_bytes=_FORM),
    RouteSpec(method="GET", path="/portal/static/portal.css", summary="The pages' stylesheet", authenticated=False,
              max_body_bytes=0),
)  # fmt: skip
