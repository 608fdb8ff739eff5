"""Registered event types, their generated JSON Schemas and the AsyncAPI document."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from contracts.envelope import EventEnvelope
from contracts.events import EventPayload, StreamSpec, registry
from contracts.generate import (
    ENVELOPE_SCHEMA_PATH,
    GENERATED_DIR,
    build_artefacts,
    drift,
    dump_json,
    schema_path,
    stale_files,
    write_artefacts,
)

EVENT_TYPE = re.compile(
    r"^edu\.(?P<service>[a-z][a-z0-9_]*)\.(?P<entity>[a-z][a-z0-9_]*)\.(?P<event>[a-z][a-z0-9_]*)"
    r"\.v(?P<version>[1-9][0-9]*)$"
)
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")
DOC_BASE = "https://asyncapi.test/asyncapi.json"
MODELS = registry.all()

# Realistic payloads; an event type without one gets a sample synthesised from its schema.
SAMPLES: dict[str, dict[str, Any]] = {
    "edu.identity.organisation.created.v1": {
        "org_id": "org-3301-0007",
        "parent_id": "org-3301",
        "kind": "school",
        "name": "城东实验小学",
        "path": "org-33/org-3301/org-3301-0007",
        "school_code": "2133010007",
        "school_type": "primary",
    },
    "edu.identity.person.created.v1": {
        "person_id": "p-1",
        "kind": "student",
        "name": "张小明",
        "org_id": "org-3301-0007",
        "student_number": "G330102201503010011",
        "sex": "male",
    },
    "edu.identity.guardian.linked.v1": {
        "link_id": "l-1",
        "guardian_id": "p-2",
        "student_id": "p-1",
        "relationship": "mother",
    },
    "edu.metering.period.closed.v1": {"period": "2026-10", "closed_at": "2026-11-06T00:00:00Z", "statements": 12},
}


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = target
    return schema


def synthesise(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """A value valid for simple pydantic-generated schemas (every property filled in)."""
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [option for option in schema[key] if _resolve(option, root).get("type") != "null"]
            return synthesise((options or schema[key])[0], root)
    kind = schema.get("type")
    if kind == "object":
        return {name: synthesise(sub, root) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [synthesise(schema.get("items", {}), root)] * max(1, schema.get("minItems", 1))
    if kind == "string":
        return {"date-time": "2025-03-01T08:30:00Z", "date": "2025-03-01"}.get(
            schema.get("format", ""), "x" * max(1, schema.get("minLength", 1))
        )
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    return None


def sample_for(model: type[EventPayload], schema: dict[str, Any]) -> dict[str, Any]:
    if model.event_type() in SAMPLES:
        return copy.deepcopy(SAMPLES[model.event_type()])
    sample = synthesise(schema, schema)
    assert isinstance(sample, dict)
    return sample


def committed(path: str) -> Any:
    return json.loads((GENERATED_DIR / path).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def artefacts() -> dict[str, Any]:
    return build_artefacts()


@pytest.fixture(scope="module")
def asyncapi(artefacts: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = artefacts["asyncapi.json"]
    return document


def _matches(subject: str, pattern: str) -> bool:
    """NATS subject matching with `*` (one token) and `>` (one or more trailing tokens)."""
    tokens, wanted = subject.split("."), pattern.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(tokens) == len(wanted)


def test_nats_matching_helper() -> None:
    assert _matches("edu.identity.person.created", "edu.identity.>")
    assert not _matches("edu.identity", "edu.identity.>")
    assert not _matches("edu.identityx.person.created", "edu.identity.>")
    assert _matches("a.b", "a.*") and not _matches("a.b.c", "a.*")


def test_registry_is_not_empty() -> None:
    assert len(MODELS) >= 8
    assert "identity" in registry.services()


# --- Event types and subjects ------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.event_type())
def test_event_type_is_well_formed_and_owned_by_its_service_stream(model: type[EventPayload]) -> None:
    event_type = model.event_type()
    match = EVENT_TYPE.match(event_type)
    assert match, f"{event_type} does not match edu.<service>.<entity>.<event>.v<N>"
    assert match["service"] == model.service
    assert int(match["version"]) == model.version
    assert event_type == f"{model.subject()}.v{model.version}"
    assert registry.model_for(event_type) is model

    own = StreamSpec(model.service)
    assert own.name == f"EDU_{model.service.upper()}"
    assert any(_matches(model.subject(), pattern) for pattern in own.subjects)
    others = [spec for spec in registry.streams() if spec.service != model.service]
    for spec in others:
        assert not any(_matches(model.subject(), pattern) for pattern in spec.subjects), spec.name
    assert any(spec.name == own.name for spec in registry.streams())


def test_stream_subjects_do_not_overlap() -> None:
    streams = registry.streams()
    assert len({spec.name for spec in streams}) == len(streams)
    for model in MODELS:
        owners = [spec.name for spec in streams if any(_matches(model.subject(), p) for p in spec.subjects)]
        assert owners == [StreamSpec(model.service).name], model.event_type()


# --- JSON Schemas of payloads ------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.event_type())
def test_payload_schema_describes_the_model(model: type[EventPayload], artefacts: dict[str, Any]) -> None:
    schema = artefacts[schema_path(model)]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == model.schema_uri()
    assert schema["$id"].endswith("/" + schema_path(model).removeprefix("schemas/"))
    assert schema["title"] == model.__name__
    assert schema["description"] == (model.__doc__ or "").strip()
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.event_type())
def test_sample_payload_validates_and_invalid_ones_do_not(model: type[EventPayload], artefacts: dict[str, Any]) -> None:
    schema = artefacts[schema_path(model)]
    validator = Draft202012Validator(schema)
    sample = sample_for(model, schema)
    try:
        model.model_validate(sample)
    except ValidationError as error:  # pragma: no cover - a message for whoever adds an event
        pytest.fail(f"add a valid sample for {model.event_type()} to SAMPLES: {error}")
    assert not list(validator.iter_errors(sample)), list(validator.iter_errors(sample))

    # An unknown field.
    assert not validator.is_valid({**sample, "unexpected_field": 1})
    with pytest.raises(ValidationError):
        model.model_validate({**sample, "unexpected_field": 1})
    # Each required field missing.
    assert schema["required"], f"{model.event_type()} has no required field"
    for name in schema["required"]:
        incomplete = {key: value for key, value in sample.items() if key != name}
        assert not validator.is_valid(incomplete), f"schema accepts {model.event_type()} without {name}"
        with pytest.raises(ValidationError):
            model.model_validate(incomplete)
    # A value of the wrong type: schema and model must agree, and ids (strings) must be refused.
    rejected = 0
    for name in schema["properties"]:
        wrong = {**sample, name: {"wrong": ["type"]}}
        schema_accepts = validator.is_valid(wrong)
        try:
            model.model_validate(wrong)
            model_accepts = True
        except ValidationError:
            model_accepts = False
        assert schema_accepts == model_accepts, f"schema and model disagree on {name} = an object"
        rejected += not schema_accepts
    assert rejected > 0


def test_enum_values_are_enforced(artefacts: dict[str, Any]) -> None:
    schema = artefacts["schemas/edu.identity.guardian.linked.v1.json"]
    sample = SAMPLES["edu.identity.guardian.linked.v1"]
    assert Draft202012Validator(schema).is_valid(sample)
    assert not Draft202012Validator(schema).is_valid({**sample, "relationship": "neighbour"})


def test_envelope_schema_matches_real_envelopes(artefacts: dict[str, Any]) -> None:
    schema = artefacts[ENVELOPE_SCHEMA_PATH]
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    envelope = EventEnvelope(
        source="/edu/identity", type="edu.identity.person.deactivated.v1", data={"person_id": "p-1"}
    )
    raw = json.loads(envelope.to_json_bytes())
    assert validator.is_valid(raw)
    assert set(schema["required"]) >= {"id", "source", "specversion", "type", "data"}
    for name in ("id", "source", "specversion", "type", "data"):
        assert not validator.is_valid({key: value for key, value in raw.items() if key != name}), name
    assert not validator.is_valid({**raw, "specversion": "0.3"})
    assert not validator.is_valid({**raw, "comexampleextension": "x"})


# --- Drift between the code and contracts/generated --------------------------------------------------


def test_committed_artefacts_are_up_to_date(artefacts: dict[str, Any]) -> None:
    out_of_date = [
        path
        for path, content in artefacts.items()
        if not (GENERATED_DIR / path).is_file() or (GENERATED_DIR / path).read_bytes() != dump_json(content)
    ]
    assert not out_of_date, f"contracts/generated is out of date ({', '.join(out_of_date)}): run `make contracts`"


def test_no_stale_generated_files(artefacts: dict[str, Any]) -> None:
    stale = stale_files(GENERATED_DIR, artefacts)
    assert not stale, f"contracts/generated has files nothing generates ({', '.join(stale)}): run `make contracts`"


def test_serialisation_is_stable_and_readable() -> None:
    data = dump_json({"b": 1, "a": {"名称": "城东实验小学"}})
    assert data == '{\n  "a": {\n    "名称": "城东实验小学"\n  },\n  "b": 1\n}\n'.encode()
    raw = (GENERATED_DIR / "scopes.json").read_bytes()
    assert raw.endswith(b"}\n") and "手机号码".encode() in raw


def test_write_artefacts_writes_everything_and_removes_stale_files(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "edu.identity.person.merged.v1.json").write_text("{}\n")
    written = write_artefacts(tmp_path)
    assert "schemas/edu.identity.person.merged.v1.json" in written
    assert not (tmp_path / "schemas" / "edu.identity.person.merged.v1.json").exists()
    assert drift(tmp_path) == []
    assert write_artefacts(tmp_path) == [], "a second run should change nothing"
    (tmp_path / "scopes.json").write_text("{}\n")
    assert drift(tmp_path) == ["scopes.json"]


def test_module_runs_from_any_directory(tmp_path: Path) -> None:
    """`python -m contracts.generate --check` finds contracts/generated wherever it is started from."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-m", "contracts.generate", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


# --- AsyncAPI ----------------------------------------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _pointer(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} does not point inside the document"
    target: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(target, dict) and part in target, f"{ref} does not resolve"
        target = target[part]
    return target


def _deref(document: dict[str, Any], node: Any) -> Any:
    """Follow a chain of references (a channel's message may itself be a reference)."""
    seen: set[str] = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        assert node["$ref"] not in seen, f"reference cycle at {node['$ref']}"
        seen.add(node["$ref"])
        node = _pointer(document, node["$ref"])
    return node


def _validator(asyncapi: dict[str, Any], ref: str) -> Draft202012Validator:
    resource = DRAFT202012.create_resource(asyncapi)
    return Draft202012Validator({"$ref": DOC_BASE + ref}, registry=Registry().with_resource(DOC_BASE, resource))


def test_asyncapi_header(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["version"] == metadata.version("edu-contracts")
    assert asyncapi["info"]["title"] and asyncapi["info"]["description"]
    assert asyncapi["servers"]["production"]["protocol"] == "nats"
    assert asyncapi["servers"]["production"]["host"].endswith(":4222")
    assert asyncapi["defaultContentType"] == "application/cloudevents+json"
    for section in ("channels", "operations"):
        assert all(COMPONENT_KEY.match(key) for key in asyncapi[section]), section
    for section in ("schemas", "messages"):
        assert all(COMPONENT_KEY.match(key) for key in asyncapi["components"][section]), section


def test_every_ref_resolves_inside_the_document(asyncapi: dict[str, Any]) -> None:
    refs = _refs(asyncapi)
    assert len(refs) > 3 * len(MODELS)
    for ref in refs:
        _deref(asyncapi, {"$ref": ref})


def test_a_dangling_ref_would_be_caught(asyncapi: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        _pointer(asyncapi, "#/components/schemas/edu.identity.person.merged.v1")
    with pytest.raises(AssertionError):
        _pointer(asyncapi, "schemas/edu.identity.person.created.v1.json")


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.event_type())
def test_every_event_has_a_channel_message_and_send_operation(
    model: type[EventPayload], asyncapi: dict[str, Any], artefacts: dict[str, Any]
) -> None:
    event_type = model.event_type()
    channels = [channel for channel in asyncapi["channels"].values() if channel["address"] == model.subject()]
    assert len(channels) == 1, f"expected one channel with address {model.subject()}"
    channel = channels[0]
    assert channel["x-jetstream-stream"] == StreamSpec(model.service).name
    assert event_type in channel["messages"]

    message = _pointer(asyncapi, channel["messages"][event_type]["$ref"])
    assert message["contentType"] == "application/cloudevents+json"
    data_refs = [ref for ref in _refs(message["payload"]) if ref.endswith("/" + event_type)]
    assert data_refs == [f"#/components/schemas/{event_type}"]
    standalone = {k: v for k, v in artefacts[schema_path(model)].items() if k not in ("$id", "$schema")}
    # Inside the document, the payload's own `$defs` are reached through its component's pointer.
    rerooted = json.loads(json.dumps(standalone).replace('"#/$defs/', f'"{data_refs[0]}/$defs/'))
    assert _pointer(asyncapi, data_refs[0]) == rerooted

    headers = _pointer(asyncapi, "#/components/schemas/EventHeaders")["properties"]
    assert {"Nats-Msg-Id", "Content-Type", "traceparent"} <= headers.keys()
    assert headers["Content-Type"]["const"] == "application/cloudevents+json"

    sends = [
        operation
        for operation in asyncapi["operations"].values()
        if operation["action"] == "send" and _pointer(asyncapi, operation["channel"]["$ref"]) is channel
    ]
    assert any(_deref(asyncapi, ref) is message for operation in sends for ref in operation["messages"]), (
        f"no send operation for {event_type}"
    )


def test_operation_messages_belong_to_their_channel(asyncapi: dict[str, Any]) -> None:
    for name, operation in asyncapi["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        for ref in operation["messages"]:
            assert ref["$ref"].startswith(channel_ref + "/messages/"), f"{name}: {ref['$ref']}"


def test_channel_parameters_match_address_placeholders(asyncapi: dict[str, Any]) -> None:
    for name, channel in asyncapi["channels"].items():
        placeholders = set(re.findall(r"\{([^}]+)\}", channel["address"]))
        assert placeholders == set(channel.get("parameters", {})), name


def test_dead_letter_channel(asyncapi: dict[str, Any]) -> None:
    channels = [c for c in asyncapi["channels"].values() if c["address"] == "deadletter.{service}.{consumer}"]
    assert len(channels) == 1
    channel = channels[0]
    assert channel["x-jetstream-stream"] == "DEADLETTER"
    assert set(channel["parameters"]) == {"service", "consumer"}
    (message_ref,) = channel["messages"].values()
    headers = _pointer(asyncapi, _pointer(asyncapi, message_ref["$ref"])["headers"]["$ref"])
    assert {"Edu-Error", "Edu-Consumer", "Edu-Original-Subject", "Nats-Msg-Id"} <= set(headers["required"])


def test_message_payload_schema_accepts_a_real_event_and_refuses_a_wrong_one(
    asyncapi: dict[str, Any],
) -> None:
    model = registry.model_for("edu.identity.person.created.v1")
    data = SAMPLES[model.event_type()]
    envelope = EventEnvelope(
        source=f"/edu/{model.service}",
        type=model.event_type(),
        subject="p-1",
        dataschema=model.schema_uri(),
        orgid="org-3301-0007",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        data=data,
    )
    raw = json.loads(envelope.to_json_bytes())
    validator = _validator(asyncapi, f"#/components/messages/{model.event_type()}/payload")
    assert not list(validator.iter_errors(raw)), list(validator.iter_errors(raw))
    assert not validator.is_valid({**raw, "type": "edu.identity.person.updated.v1"})
    assert not validator.is_valid({**raw, "data": {**data, "kind": "robot"}})
    assert not validator.is_valid({key: value for key, value in raw.items() if key != "source"})

    headers = _validator(asyncapi, f"#/components/messages/{model.event_type()}/headers")
    good = {
        "Nats-Msg-Id": envelope.id,
        "Content-Type": "application/cloudevents+json",
        "ce-type": envelope.type,
    }
    assert headers.is_valid(good)
    assert not headers.is_valid({**good, "ce-type": "edu.identity.person.updated.v1"})
    assert not headers.is_valid({key: value for key, value in good.items() if key != "Nats-Msg-Id"})
