"""App store routes: installations at schools, teachers' app requests, the caller's apps, app credentials.

None is open to vendors' apps: installing, granting and credentials are decisions of people.
"""

from __future__ import annotations

from contracts.api.routes import RouteSpec, TenantLocator

_SCHOOL = TenantLocator(source="path", name="school_id")
_INSTALL = ("apps.install",)
_READ = ("apps.read",)

# fmt: off
ROUTES: tuple[RouteSpec, ...] = (
    # Installations (school administrators, or district and city administrators above the school).
    RouteSpec(method="POST", path="/schools/{school_id}/installations", summary="Install an app at a school",
              scopes=_INSTALL, tenant=_SCHOOL),
    RouteSpec(method="GET", path="/schools/{school_id}/installations",
              summary="A school's installed apps: what data each gets and why", scopes=_INSTALL, tenant=_SCHOOL),
    RouteSpec(method="GET", path="/schools/{school_id}/installations/{installation_id}",
              summary="Read an installation", scopes=_INSTALL, tenant=_SCHOOL),
    RouteSpec(method="PUT", path="/schools/{school_id}/installations/{installation_id}",
              summary="Re-grant an installed app's scopes, grades and classes", scopes=_INSTALL, tenant=_SCHOOL),
    RouteSpec(method="DELETE", path="/schools/{school_id}/installations/{installation_id}",
              summary="Uninstall an app", scopes=_INSTALL, tenant=_SCHOOL),
    RouteSpec(method="GET", path="/me/apps", summary="The apps installed for me", scopes=_READ),
    # Teachers' requests.
    RouteSpec(method="POST", path="/schools/{school_id}/app-requests", summary="Request an app for my school",
              scopes=_READ, tenant=_SCHOOL, rate_limit="30/minute"),
    RouteSpec(method="GET", path="/schools/{school_id}/app-requests", summary="Teachers' app requests at a school",
              scopes=_INSTALL, tenant=_SCHOOL),
    RouteSpec(method="POST", path="/schools/{school_id}/app-requests/{request_id}/approve",
              summary="Approve a teacher's app request (installs the app)", scopes=_INSTALL, tenant=_SCHOOL),
    RouteSpec(method="POST", path="/schools/{school_id}/app-requests/{request_id}/decline",
              summary="Decline a teacher's app request", scopes=_INSTALL, tenant=_SCHOOL),
    RouteSpec(method="GET", path="/me/app-requests", summary="My app requests and their outcomes", scopes=_READ),
    # Vendors' developers.
    RouteSpec(method="POST", path="/apps/{app_id}/credentials",
              summary="Issue the app's OAuth client credentials (rotates the secret)", scopes=("apps.develop",),
              rate_limit="10/minute"),
)
# fmt: on
