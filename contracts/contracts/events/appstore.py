"""Events published by the app store (stream EDU_APPSTORE).

Installation events drive the gateway's installation check and identity's token revocation; publication
events carry the pricing plan metering bills by; launch events are metered usage. A user appears only as
the app's pairwise pseudonym, never as a platform person id.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from contracts.events.base import EventPayload, registry
from contracts.manifest import PricingUnit

AppStatus = Literal["listed", "suspended", "retired"]
ReviewDecision = Literal["approved", "rejected", "changes_requested"]
RemovalReason = Literal["uninstalled", "app_suspended", "app_retired"]
LaunchKind = Literal["oidc", "lti_1p3"]


class _AppStoreEvent(EventPayload):
    service = "appstore"


@registry.register
class VendorRegisteredV1(_AppStoreEvent):
    """A vendor organisation registered with the app store."""

    entity = "vendor"
    event = "registered"
    summary = "A vendor (company with its unified social credit code and filings) registered with the app store."

    vendor_id: str
    name: str
    unified_social_credit_code: str


@registry.register
class VendorMemberAddedV1(_AppStoreEvent):
    """A developer joined a vendor (its registrant, or by accepting an invitation)."""

    entity = "vendor_member"
    event = "added"
    summary = "A developer joined a vendor: they may act for it, and read its usage and statements."

    vendor_id: str
    person_id: str
    role: Literal["owner", "developer"]


@registry.register
class VendorMemberRemovedV1(_AppStoreEvent):
    """A developer no longer works for a vendor."""

    entity = "vendor_member"
    event = "removed"
    summary = "A developer was removed from a vendor: they no longer act for it or read its statements."

    vendor_id: str
    person_id: str


@registry.register
class AppVersionSubmittedV1(_AppStoreEvent):
    """A vendor submitted a version of an app's manifest for review."""

    entity = "app_version"
    event = "submitted"
    summary = "A vendor submitted an app version for the city's review (审核准入)."

    app_id: str
    version_id: str
    app_version: str = Field(description="The semantic version the vendor gave it")
    vendor_id: str
    needs_regrant: bool = Field(description="The version asks for scopes the published version did not")


@registry.register
class AppVersionReviewedV1(_AppStoreEvent):
    """A city reviewer decided on a submitted version."""

    entity = "app_version"
    event = "reviewed"
    summary = "A city reviewer approved, rejected or asked for changes to an app version, with reasons."

    app_id: str
    version_id: str
    vendor_id: str
    decision: ReviewDecision
    reasons: list[str] = Field(default_factory=list)
    reviewed_at: datetime


@registry.register
class AppPublishedV1(_AppStoreEvent):
    """An approved version became the app's current version in the catalog."""

    entity = "app"
    event = "published"
    summary = (
        "An app version was published: its scopes and its pricing plan apply from effective_at "
        "(metering prices use at the plan in force at the time of use)."
    )

    app_id: str
    vendor_id: str
    version_id: str
    app_version: str = Field(description="The semantic version the vendor gave it")
    client_id: str = Field(description="The app's OAuth client at the identity provider")
    scopes: list[str]
    pricing_unit: PricingUnit
    unit_price_fen: int
    monthly_cap_fen_per_school: int | None = None
    effective_at: datetime
    app_name: str | None = Field(default=None, description="The app's Chinese name, for statements and reports")
    reported_unit_name: str | None = Field(
        default=None, description="What one vendor-reported unit is, for plans priced per reported_unit"
    )


@registry.register
class AppStatusChangedV1(_AppStoreEvent):
    """The city suspended, reinstated or retired an app."""

    entity = "app"
    event = "status_changed"
    summary = (
        "The city suspended, reinstated or retired (淘汰) an app; at effective_at a suspended or retired app's "
        "installations are removed and its tokens revoked."
    )

    app_id: str
    vendor_id: str
    client_id: str | None = None
    status: Literal["listed", "suspended", "retired"]
    reason: str
    effective_at: datetime


class _InstallationFacts(_AppStoreEvent):
    installation_id: str = Field(description="Also the LTI deployment id")
    app_id: str
    client_id: str
    school_id: str
    scopes: list[str] = Field(description="The scopes the school granted")
    grades: list[str] = Field(default_factory=list, description="CEDS grade codes the school opened it to; empty: all")
    class_ids: list[str] = Field(default_factory=list, description="Classes the school opened it to; empty: all")
    version_id: str


@registry.register
class InstallationGrantedV1(_InstallationFacts):
    """A school installed an app, or changed what it granted the app."""

    entity = "installation"
    event = "granted"
    summary = "A school installed an app or changed the scopes, grades or classes it granted; the gateway admits it."

    granted_at: datetime


@registry.register
class InstallationRemovedV1(_InstallationFacts):
    """An app's installation at a school ended: its tokens for the school are revoked."""

    entity = "installation"
    event = "removed"
    summary = (
        "An app was uninstalled from a school (or the app was suspended or retired): the gateway stops admitting "
        "it, identity revokes its tokens for the school's people, and the vendor must delete the school's data "
        "by delete_data_by."
    )

    reason: RemovalReason
    removed_at: datetime
    delete_data_by: date


@registry.register
class AppLaunchedV1(_AppStoreEvent):
    """A user opened an installed app: one metered launch."""

    entity = "app"
    event = "launched"
    summary = "A user launched an installed app (OIDC or LTI 1.3): one usage event for metering."

    launch_id: str
    app_id: str
    vendor_id: str
    installation_id: str
    school_id: str
    user_pseudonym: str = Field(description="The user's pairwise subject identifier at this app")
    role: str = Field(description="The user's role at the school: teacher, student, school_admin, parent")
    kind: LaunchKind
    class_id: str | None = Field(default=None, description="The class the app was launched from (LTI context)")
    launched_at: datetime
