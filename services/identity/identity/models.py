"""Every table of the identity service, for migrations."""

from identity.accounts.models import BrowserSession, LoginThrottle, TotpCredential
from identity.imports.models import ImportJob, ImportUpload
from identity.keys.models import SigningKey
from identity.oauth.models import (
    AuthorizationCode,
    Consent,
    GuardianConsentRequest,
    IssuedAccessToken,
    OAuthClient,
    PairwiseSubject,
    RefreshToken,
    UsedClientAssertion,
)
from identity.organisations.models import Organisation
from identity.people.models import GuardianLink, Person, RoleGrant
from kit.audit import AuditEntry
from kit.db import service_metadata
from kit.inbox import ProcessedEvent
from kit.outbox import OutboxEvent

metadata = service_metadata(
    Organisation, Person, RoleGrant, GuardianLink, AuditEntry, ImportJob, ImportUpload, SigningKey,
    OutboxEvent, ProcessedEvent, OAuthClient, AuthorizationCode, RefreshToken, IssuedAccessToken, PairwiseSubject,
    Consent, GuardianConsentRequest, UsedClientAssertion, LoginThrottle, TotpCredential, BrowserSession,
)  # fmt: skip

__all__ = [
    "AuditEntry",
    "AuthorizationCode",
    "BrowserSession",
    "Consent",
    "GuardianConsentRequest",
    "GuardianLink",
    "ImportJob",
    "ImportUpload",
    "IssuedAccessToken",
    "LoginThrottle",
    "OAuthClient",
    "Organisation",
    "OutboxEvent",
    "PairwiseSubject",
    "Person",
    "ProcessedEvent",
    "RefreshToken",
    "RoleGrant",
    "SigningKey",
    "TotpCredential",
    "UsedClientAssertion",
    "metadata",
]
