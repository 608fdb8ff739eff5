"""Which apps get which webhook events: the published manifest's subscription and the school's grant."""

from __future__ import annotations

from functools import lru_cache

from sqlmodel import Session

from appstore.apps.models import App, AppVersion
from appstore.installations.models import Installation
from contracts.manifest import WEBHOOK_EVENT_SCOPES, AppManifestV1, Webhook


@lru_cache(maxsize=4096)
def _parsed_manifest(version_id: str, document: str) -> AppManifestV1:
    # A published version never changes, so its parsed manifest can be kept for the life of the process.
    return AppManifestV1.model_validate_json(document)


def published_webhook(session: Session, app: App) -> Webhook | None:
    """The webhook section of the app's published manifest (None: never published, or no webhook)."""
    if app.published_version_id is None:
        return None
    version = session.get(AppVersion, app.published_version_id)
    if version is None:
        return None
    return _parsed_manifest(version.id, version.manifest).webhook


def granted(installation: Installation, event_type: str) -> bool:
    """The school granted the installation every scope the event type needs."""
    scopes = set(installation.scopes.split())
    return all(scope in scopes for scope in WEBHOOK_EVENT_SCOPES[event_type])


def reaches_class(installation: Installation, class_id: str, grade: str | None) -> bool:
    """The installation may know about this class (its grade is unknown when the projection lacks it)."""
    return installation.opens_class(class_id, grade)
