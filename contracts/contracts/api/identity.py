"""The identity service's public routes (served at /api/identity) and its root paths."""

from __future__ import annotations

from contracts.api.routes import RouteSpec, ServiceApi, TenantLocator

_ORG = TenantLocator(source="path", name="org_id")

IDENTITY_API = ServiceApi(
    service="identity",
    title="Identity: organisations, people, roles, guardians, imports, audit, keys",
    routes=(
        # Organisations: the tree itself is no school's personal data, so apps holding org.read may read it.
        RouteSpec(
            method="GET", path="/organisations", summary="List organisations", scopes=("org.read",), app_access="open"
        ),
        RouteSpec(method="POST", path="/organisations", summary="Create an organisation", scopes=("org.write",)),
        RouteSpec(
            method="GET",
            path="/organisations/{org_id}",
            summary="Read an organisation",
            scopes=("org.read",),
            app_access="open",
            tenant=_ORG,
        ),
        RouteSpec(
            method="PATCH",
            path="/organisations/{org_id}",
            summary="Change an organisation",
            scopes=("org.write",),
            tenant=_ORG,
        ),
        RouteSpec(
            method="POST",
            path="/organisations/{org_id}/deactivate",
            summary="Deactivate an organisation",
            scopes=("org.write",),
            tenant=_ORG,
        ),
        # People: platform-only scopes; a vendor's app never reads the directory directly.
        RouteSpec(method="GET", path="/people", summary="List people", scopes=("people.read",)),
        RouteSpec(method="POST", path="/people", summary="Create a person", scopes=("people.write",)),
        RouteSpec(method="GET", path="/people/{person_id}", summary="Read a person", scopes=("people.read",)),
        RouteSpec(method="PATCH", path="/people/{person_id}", summary="Change a person", scopes=("people.write",)),
        RouteSpec(
            method="GET",
            path="/people/{person_id}/resident-id",
            summary="Reveal a resident ID number",
            scopes=("student.identity.read",),
            rate_limit="30/minute",
        ),
        RouteSpec(
            method="POST",
            path="/people/{person_id}/deactivate",
            summary="Deactivate a person",
            scopes=("people.write",),
        ),
        RouteSpec(
            method="POST",
            path="/people/{person_id}/initial-password",
            summary="Issue an initial password",
            scopes=("people.write",),
            rate_limit="60/minute",
        ),
        RouteSpec(
            method="GET", path="/people/{person_id}/roles", summary="List a person's roles", scopes=("people.read",)
        ),
        RouteSpec(method="POST", path="/people/{person_id}/roles", summary="Grant a role", scopes=("people.write",)),
        RouteSpec(
            method="POST",
            path="/people/{person_id}/roles/{grant_id}/revoke",
            summary="Revoke a role",
            scopes=("people.write",),
        ),
        RouteSpec(
            method="GET",
            path="/people/{person_id}/guardians",
            summary="List a student's guardians",
            scopes=("people.read",),
        ),
        RouteSpec(
            method="POST", path="/people/{person_id}/guardians", summary="Link a guardian", scopes=("people.write",)
        ),
        # Bulk import: large uploads, given time to arrive.
        RouteSpec(
            method="POST",
            path="/imports",
            summary="Start a bulk import",
            scopes=("people.write",),
            max_body_bytes=20 * 1_048_576,
            timeout_seconds=120,
            rate_limit="10/minute",
        ),
        RouteSpec(method="GET", path="/imports", summary="List import jobs", scopes=("people.write",)),
        RouteSpec(method="GET", path="/imports/{job_id}", summary="Read an import job", scopes=("people.write",)),
        # Audit and keys.
        RouteSpec(method="GET", path="/audit/entries", summary="Search the audit log", scopes=("audit.read",)),
        RouteSpec(
            method="GET",
            path="/audit/verify",
            summary="Verify the audit chain",
            scopes=("audit.read",),
            timeout_seconds=60,
        ),
        RouteSpec(method="POST", path="/keys/rotate", summary="Rotate the signing key", scopes=("keys.manage",)),
        # OAuth client registration (the app store's internal calls).
        RouteSpec(method="POST", path="/oauth/clients", summary="Register an OAuth client", scopes=("clients.manage",)),
        RouteSpec(
            method="GET", path="/oauth/clients/{client_id}", summary="Read an OAuth client", scopes=("clients.manage",)
        ),
        RouteSpec(
            method="PATCH",
            path="/oauth/clients/{client_id}",
            summary="Change an OAuth client",
            scopes=("clients.manage",),
        ),
        RouteSpec(
            method="POST",
            path="/oauth/clients/{client_id}/secret",
            summary="Rotate a client secret",
            scopes=("clients.manage",),
        ),
        RouteSpec(
            method="POST",
            path="/oauth/clients/{client_id}/disable",
            summary="Disable an OAuth client",
            scopes=("clients.manage",),
        ),
    ),
    root_paths=(
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
        "/oauth/authorize",
        "/oauth/token",
        "/oauth/introspect",
        "/oauth/revoke",
        "/oauth/userinfo",
        "/oauth/logout",
        "/login",
        "/login/",
        "/logout",
        "/account",
        "/account/",
        "/static/",
    ),
)
