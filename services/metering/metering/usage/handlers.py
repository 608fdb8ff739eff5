"""Usage from the platform's streams: the gateway's API-call records and the app store's launches.

Both consumers take whole batches of messages into one transaction (``record_usage`` does a few statements per
batch, not per event), which is what lets one instance keep up with the city's peak. The app store's stream also
carries the facts usage is checked against (plans, installations); they are applied in stream order between the
launches around them.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from contracts.envelope import EventEnvelope
from contracts.events import appstore as appstore_events
from contracts.events import gateway as gateway_events
from metering.config import MeteringSettings
from metering.projections.handlers import APPSTORE_HANDLERS
from metering.usage.service import (
    API_CALL,
    LAUNCH,
    UsageInput,
    hold_classification_lock,
    launches_with_waiting_reports,
    match_reports_to_launch,
    record_usage,
)

GATEWAY_SUBJECTS = [gateway_events.ApiUsageRecordedV1.subject()]
APPSTORE_SUBJECTS = [
    appstore_events.AppLaunchedV1.subject(),
    appstore_events.VendorRegisteredV1.subject(),
    appstore_events.VendorMemberAddedV1.subject(),
    appstore_events.VendorMemberRemovedV1.subject(),
    appstore_events.AppPublishedV1.subject(),
    appstore_events.AppStatusChangedV1.subject(),
    appstore_events.InstallationGrantedV1.subject(),
    appstore_events.InstallationRemovedV1.subject(),
]

#: Usage events: the ledger's unique key (source, source event id) keeps each from counting twice, whatever envelope
#: brings it, so the consumers keep no processed-id row for them (one per launch would double what ingest writes).
#: The facts on the app store's stream (plans, installations, vendors) keep them.
SELF_DEDUPLICATED = frozenset(
    {appstore_events.AppLaunchedV1.event_type(), gateway_events.ApiUsageRecordedV1.event_type()}
)

BatchHandler = Callable[[Session, list[EventEnvelope]], None]


def _api_calls(envelope: EventEnvelope) -> list[UsageInput]:
    batch = gateway_events.ApiUsageRecordedV1.model_validate(envelope.data)
    return [
        UsageInput(
            source="gateway",
            source_event_id=record.id,
            app_id=record.app_id,
            school_id=record.school_id,
            meter=API_CALL,
            quantity=1,
            occurred_at=record.at,
        )
        for record in batch.records
    ]


def _launch(envelope: EventEnvelope) -> UsageInput:
    event = appstore_events.AppLaunchedV1.model_validate(envelope.data)
    return UsageInput(
        source="appstore", source_event_id=event.launch_id, app_id=event.app_id, school_id=event.school_id,
        meter=LAUNCH, quantity=1, occurred_at=event.launched_at, user_pseudonym=event.user_pseudonym,
        role=event.role, launch_id=event.launch_id,
    )  # fmt: skip


def build_gateway_handler(settings: MeteringSettings) -> BatchHandler:
    def apply(session: Session, envelopes: list[EventEnvelope]) -> None:
        inputs = [item for envelope in envelopes for item in _api_calls(envelope)]
        record_usage(session, inputs, max_reported_units_per_launch=settings.max_reported_units_per_launch)

    return apply


def build_appstore_handler(settings: MeteringSettings) -> BatchHandler:
    launched = appstore_events.AppLaunchedV1.event_type()
    limit = settings.max_reported_units_per_launch

    def flush(session: Session, launches: list[UsageInput]) -> None:
        if not launches:
            return
        record_usage(session, launches, max_reported_units_per_launch=limit)
        for launch_id in launches_with_waiting_reports(session, [launch.source_event_id for launch in launches]):
            match_reports_to_launch(session, launch_id, max_reported_units_per_launch=limit)
        launches.clear()

    def apply(session: Session, envelopes: list[EventEnvelope]) -> None:
        if any(envelope.type != launched for envelope in envelopes):
            # Facts that re-check recorded usage: exclusive from the start (not shared, then upgraded, which two
            # replicas could deadlock on).
            hold_classification_lock(session, exclusive=True)
        launches: list[UsageInput] = []
        for envelope in envelopes:
            if envelope.type == launched:
                launches.append(_launch(envelope))
                continue
            handler = APPSTORE_HANDLERS.get(envelope.type)
            if handler is not None:
                flush(session, launches)
                handler(session, envelope.data, settings)
        flush(session, launches)

    return apply
