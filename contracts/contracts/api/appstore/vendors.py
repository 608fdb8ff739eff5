"""App store routes: vendors and their developers, apps and manifest versions, the city's review (审核准入),
suspension and retirement (淘汰), notices to schools, and the catalog.

None of them is open to vendors' apps: a vendor's developers act as people (role vendor_developer, apps.develop);
reviewers are city administrators (apps.review); school staff browse the catalog (apps.read).
"""

from __future__ import annotations

from contracts.api.routes import RouteSpec, TenantLocator

_DEVELOP = ("apps.develop",)
_REVIEW = ("apps.review",)
_READ = ("apps.read",)
_SCHOOL = TenantLocator(source="path", name="school_id")
# The security self-assessment PDF (10 MiB) plus the multipart envelope.
_ATTACHMENT_BODY_BYTES = 11 * 1024 * 1024

_VENDORS = (
    RouteSpec(method="POST", path="/vendors", summary="Register a vendor", scopes=_DEVELOP),
    RouteSpec(method="GET", path="/vendors", summary="The vendors the caller develops for", scopes=_DEVELOP),
    RouteSpec(method="GET", path="/vendors/{vendor_id}", summary="Read a vendor", scopes=_DEVELOP),
    RouteSpec(method="GET", path="/vendors/{vendor_id}/members", summary="A vendor's developers", scopes=_DEVELOP),
    RouteSpec(method="DELETE", path="/vendors/{vendor_id}/members/{person_id}", summary="Remove a developer",
              scopes=_DEVELOP),
    RouteSpec(method="POST", path="/vendors/{vendor_id}/invitations", summary="Invite a developer (one-time code)",
              scopes=_DEVELOP),
    RouteSpec(method="POST", path="/vendor-invitations/accept", summary="Join a vendor with an invitation code",
              scopes=_DEVELOP, rate_limit="20/minute"),
)  # fmt: skip

_APPS = (
    RouteSpec(method="POST", path="/vendors/{vendor_id}/apps", summary="Create an app with its first manifest",
              scopes=_DEVELOP),
    RouteSpec(method="GET", path="/vendors/{vendor_id}/apps", summary="A vendor's apps", scopes=_DEVELOP),
    RouteSpec(method="GET", path="/apps/{app_id}", summary="Read an app and its versions", scopes=_DEVELOP),
    RouteSpec(method="POST", path="/apps/{app_id}/versions", summary="Add a manifest version", scopes=_DEVELOP),
    RouteSpec(method="GET", path="/apps/{app_id}/versions/{version_id}", summary="Read a version and its decisions",
              scopes=_DEVELOP),
    RouteSpec(method="PUT", path="/apps/{app_id}/versions/{version_id}", summary="Edit a draft version",
              scopes=_DEVELOP),
    RouteSpec(method="PUT", path="/apps/{app_id}/versions/{version_id}/security-assessment",
              summary="Attach the security self-assessment (PDF)", scopes=_DEVELOP,
              max_body_bytes=_ATTACHMENT_BODY_BYTES, timeout_seconds=60),
    RouteSpec(method="GET", path="/apps/{app_id}/versions/{version_id}/security-assessment",
              summary="Download the security self-assessment", scopes=_DEVELOP),
    RouteSpec(method="POST", path="/apps/{app_id}/versions/{version_id}/submit", summary="Submit a version for review",
              scopes=_DEVELOP),
)  # fmt: skip

_REVIEWS = (
    RouteSpec(method="GET", path="/review/queue", summary="Versions awaiting review, oldest first", scopes=_REVIEW),
    RouteSpec(method="GET", path="/review/versions/{version_id}", summary="Open a version for review", scopes=_REVIEW),
    RouteSpec(method="GET", path="/review/versions/{version_id}/security-assessment",
              summary="Download a version's security self-assessment", scopes=_REVIEW),
    RouteSpec(method="POST", path="/review/versions/{version_id}/decisions",
              summary="Approve, reject or request changes", scopes=_REVIEW),
    RouteSpec(method="POST", path="/apps/{app_id}/status-changes", summary="Suspend, reinstate or retire an app",
              scopes=_REVIEW),
    RouteSpec(method="DELETE", path="/apps/{app_id}/status-changes/{change_id}",
              summary="Withdraw a pending status change", scopes=_REVIEW),
    # Reviewers (apps.review) and the vendor's developers (apps.develop) read them; the service checks which.
    RouteSpec(method="GET", path="/apps/{app_id}/status-changes", summary="An app's status changes"),
    RouteSpec(method="GET", path="/review/retirement-proposals",
              summary="Apps proposed for retirement by metering's benefit ranking", scopes=_REVIEW),
    RouteSpec(method="POST", path="/review/retirement-proposals/{proposal_id}/decision",
              summary="Retire the app or dismiss a retirement proposal", scopes=_REVIEW),
    RouteSpec(method="GET", path="/schools/{school_id}/notices", summary="Notices to a school about its apps",
              scopes=_READ, tenant=_SCHOOL),
)  # fmt: skip

_CATALOG = (
    RouteSpec(method="GET", path="/catalog/apps", summary="Search the catalog", scopes=_READ),
    RouteSpec(method="GET", path="/catalog/apps/{app_id}", summary="A listed app's page", scopes=_READ),
    RouteSpec(method="PUT", path="/catalog/apps/{app_id}/rating", summary="Rate an app your school installed",
              scopes=_READ),
)  # fmt: skip

ROUTES: tuple[RouteSpec, ...] = (*_VENDORS, *_APPS, *_REVIEWS, *_CATALOG)
