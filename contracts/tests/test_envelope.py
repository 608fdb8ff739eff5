"""The envelope is a conforming CloudEvents 1.0 structured event, checked against the CloudEvents SDK."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.events.identity import PersonCreatedV1

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SDK = JSONFormat()


def make_envelope(**overrides: Any) -> EventEnvelope:
    payload = PersonCreatedV1(person_id="p-1", kind="student", name="张小明", org_id="school-7")
    fields: dict[str, Any] = {
        "id": "0b6c9a52-6f4a-4a39-9a43-6c0e5b8f0d11",
        "source": "/edu/identity",
        "type": PersonCreatedV1.event_type(),
        "subject": "p-1",
        "time": datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=UTC),
        "dataschema": PersonCreatedV1.schema_uri(),
        "orgid": "school-7",
        "traceparent": TRACEPARENT,
        "tracestate": "edu=1",
        "data": payload.model_dump(mode="json"),
    }
    fields.update(overrides)
    return EventEnvelope(**fields)


def test_envelope_parses_with_the_cloudevents_sdk() -> None:
    envelope = make_envelope()
    event = SDK.read(None, envelope.to_json_bytes())
    assert isinstance(event, CloudEvent)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == envelope.id
    assert event.get_source() == "/edu/identity"
    assert event.get_type() == "edu.identity.person.created.v1"
    assert event.get_subject() == "p-1"
    assert event.get_time() == envelope.time
    assert event.get_datacontenttype() == "application/json"
    assert event.get_dataschema() == PersonCreatedV1.schema_uri()
    assert event.get_extension("orgid") == "school-7"
    assert event.get_extension("traceparent") == TRACEPARENT
    assert event.get_extension("tracestate") == "edu=1"
    assert event.get_data() == envelope.data
    assert PersonCreatedV1.model_validate(event.get_data()).name == "张小明"


def test_round_trip_through_the_sdk_preserves_everything() -> None:
    envelope = make_envelope()
    rewritten = SDK.write(SDK.read(None, envelope.to_json_bytes()))
    assert EventEnvelope.from_json_bytes(rewritten) == envelope


def test_optional_attributes_are_omitted_not_null() -> None:
    """The SDK rejects ``"subject": null``; absent optional attributes must not be serialised."""
    envelope = make_envelope(subject=None, dataschema=None, orgid=None, traceparent=None, tracestate=None)
    raw = json.loads(envelope.to_json_bytes())
    assert not {"subject", "dataschema", "orgid", "traceparent", "tracestate"} & raw.keys()
    event = SDK.read(None, envelope.to_json_bytes())
    assert event.get_subject() is None
    assert event.get_extension("orgid") is None
    assert EventEnvelope.from_json_bytes(envelope.to_json_bytes()) == envelope


def test_defaults_give_a_complete_event() -> None:
    envelope = EventEnvelope(source="/edu/identity", type="edu.identity.person.deactivated.v1", data={})
    raw = json.loads(envelope.to_json_bytes())
    assert raw["specversion"] == "1.0"
    assert raw["id"] and raw["id"] != EventEnvelope(source="/x", type="t", data={}).id
    assert raw["datacontenttype"] == "application/json"
    assert datetime.fromisoformat(raw["time"]).tzinfo is not None
    assert SDK.read(None, envelope.to_json_bytes()).get_id() == envelope.id


def test_sdk_structured_json_parses_into_the_envelope() -> None:
    time = datetime(2025, 9, 1, 0, 0, tzinfo=UTC)
    event = CloudEvent(
        {
            "id": "evt-42",
            "source": "/edu/identity",
            "type": "edu.identity.guardian.linked.v1",
            "specversion": "1.0",
            "subject": "link-1",
            "time": time,
            "datacontenttype": "application/json",
            "orgid": "school-7",
            "traceparent": TRACEPARENT,
        },
        {"link_id": "link-1", "guardian_id": "g-1", "student_id": "s-1", "relationship": "mother"},
    )
    envelope = EventEnvelope.from_json_bytes(SDK.write(event))
    assert envelope.id == "evt-42"
    assert envelope.source == "/edu/identity"
    assert envelope.type == "edu.identity.guardian.linked.v1"
    assert envelope.subject == "link-1"
    assert envelope.time == time
    assert envelope.orgid == "school-7"
    assert envelope.traceparent == TRACEPARENT
    assert envelope.tracestate is None
    assert envelope.data["relationship"] == "mother"


def _raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(make_envelope().to_json_bytes())
    for key, value in changes.items():
        if value is ...:
            raw.pop(key)
        else:
            raw[key] = value
    return raw


def test_unchanged_raw_envelope_is_accepted() -> None:
    """The baseline of the rejection cases below: only their one change makes them invalid."""
    assert EventEnvelope.from_json_bytes(json.dumps(_raw())) == make_envelope()


@pytest.mark.parametrize(
    ("case", "raw"),
    [
        ("missing source", _raw(source=...)),
        ("empty source", _raw(source="")),
        ("missing type", _raw(type=...)),
        ("missing data", _raw(data=...)),
        ("empty id", _raw(id="")),
        ("wrong specversion", _raw(specversion="0.3")),
        ("unknown top-level attribute", _raw(comexampleextension="x")),
        ("binary data", _raw(data=..., data_base64="AAEC")),
        ("non-JSON data", _raw(datacontenttype="text/plain")),
        ("malformed time", _raw(time="yesterday")),
    ],
)
def test_bad_envelopes_are_rejected(case: str, raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EventEnvelope.from_json_bytes(json.dumps(raw))


def test_envelope_is_immutable() -> None:
    envelope = make_envelope()
    with pytest.raises(ValidationError):
        envelope.type = "edu.identity.person.updated.v1"
