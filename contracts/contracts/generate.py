"""Generate the committed contract artefacts in ``contracts/generated/``.

* ``schemas/<event_type>.json``: JSON Schema (draft 2020-12) of each event payload (the envelope's ``data``);
* ``schemas/cloudevents-envelope.json``: JSON Schema of the CloudEvents envelope;
* ``schemas/app-manifest.v1.json``: JSON Schema of the app manifest vendors submit to the app store;
* ``scopes.json``: the OAuth scope catalogue and the labels of the personal fields it releases;
* ``asyncapi.json``: an AsyncAPI 3.0.0 document of every event channel and the dead-letter channel.

Run ``python -m contracts.generate`` (``make contracts``) after changing an event, the envelope or a
scope; ``--check`` only reports drift. The output is deterministic: no timestamps, sorted keys.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tomllib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from contracts.envelope import CONTENT_TYPE_CLOUDEVENTS_JSON, EventEnvelope
from contracts.events import EventPayload, StreamSpec, registry
from contracts.events.base import SCHEMA_BASE_URI
from contracts.manifest import AppManifestV1
from contracts.messaging import (
    DEAD_LETTER_ADDRESS,
    DEAD_LETTER_STREAM,
    HEADER_ATTEMPTS,
    HEADER_CONSUMER,
    HEADER_ERROR,
    HEADER_EVENT_TYPE,
    HEADER_MESSAGE_ID,
    HEADER_ORIGINAL_SEQUENCE,
    HEADER_ORIGINAL_STREAM,
    HEADER_ORIGINAL_SUBJECT,
    HEADER_TRACEPARENT,
)
from contracts.scopes import PERSONAL_FIELDS, SCOPES

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
PACKAGE_DIR = Path(__file__).resolve().parent
GENERATED_DIR = PACKAGE_DIR.parent / "generated"
ENVELOPE_SCHEMA_PATH = "schemas/cloudevents-envelope.json"
MANIFEST_SCHEMA_PATH = "schemas/app-manifest.v1.json"
ENVELOPE_SCHEMA_URI = f"{SCHEMA_BASE_URI}/cloudevents-envelope.json"
NATS_SERVER_HOST = "nats.edu-platform.svc:4222"
# CloudEvents 1.0 REQUIRED context attributes, plus `data`, which every platform event carries.
ENVELOPE_REQUIRED = ("data", "id", "source", "specversion", "type")

ENVELOPE_COMPONENT = "CloudEventsEnvelope"
EVENT_HEADERS_COMPONENT = "EventHeaders"
DEAD_LETTER_HEADERS_COMPONENT = "DeadLetterHeaders"
DEAD_LETTER_CHANNEL = "deadletter"
DEAD_LETTER_MESSAGE = "deadletter"


def schema_path(model: type[EventPayload]) -> str:
    return f"schemas/{model.event_type()}.json"


def contracts_version() -> str:
    """The version in ``contracts/pyproject.toml`` (the installed distribution's when that is absent)."""
    pyproject = PACKAGE_DIR.parent / "pyproject.toml"
    if pyproject.is_file():
        with pyproject.open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    return metadata.version("edu-contracts")


def event_schema(model: type[EventPayload]) -> dict[str, Any]:
    """The standalone JSON Schema of one event payload."""
    schema = model.model_json_schema()
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": model.schema_uri(), **schema}


def envelope_schema() -> dict[str, Any]:
    """The standalone JSON Schema of the envelope, requiring what CloudEvents requires on the wire."""
    schema = EventEnvelope.model_json_schema()
    schema["required"] = sorted(set(schema.get("required", [])) | set(ENVELOPE_REQUIRED))
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": ENVELOPE_SCHEMA_URI, **schema}


def manifest_schema() -> dict[str, Any]:
    """The standalone JSON Schema of the app manifest (names by their wire aliases, e.g. ``zh-CN``)."""
    schema = AppManifestV1.model_json_schema(by_alias=True)
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def scopes_document() -> dict[str, Any]:
    return {
        "scopes": [item.model_dump(mode="json") for item in SCOPES],
        "personal_fields": [label.model_dump(mode="json") for label in PERSONAL_FIELDS],
    }


def _embed(schema: dict[str, Any], pointer: str) -> dict[str, Any]:
    """A standalone schema as a component: no ``$id``/``$schema``; local ``$ref``s re-rooted at ``pointer``.

    Re-rooting keeps references resolvable once the schema sits inside a larger document.
    """

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            result = {key: rewrite(value) for key, value in node.items()}
            ref = result.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                result["$ref"] = pointer + ref[1:]
            return result
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    body = {key: value for key, value in schema.items() if key not in ("$id", "$schema")}
    embedded: dict[str, Any] = rewrite(copy.deepcopy(body))
    return embedded


def _ref(*parts: str) -> dict[str, str]:
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in parts)
    return {"$ref": "#/" + "/".join(escaped)}


def _event_headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "NATS headers the outbox relay sets on every event message.",
        "properties": {
            HEADER_MESSAGE_ID: {
                "type": "string",
                "description": "The CloudEvents `id`; JetStream drops re-sends within the duplicate window.",
            },
            "Content-Type": {"type": "string", "const": CONTENT_TYPE_CLOUDEVENTS_JSON},
            HEADER_EVENT_TYPE: {
                "type": "string",
                "description": "The CloudEvents `type`, for routing without parsing.",
            },
            HEADER_TRACEPARENT: {"type": "string", "description": "W3C trace context of the cause."},
            "tracestate": {"type": "string", "description": "W3C trace state of the cause."},
        },
        "required": ["Content-Type", HEADER_MESSAGE_ID, HEADER_EVENT_TYPE],
    }


def _dead_letter_headers_schema() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "description": "NATS headers a consumer sets when it parks a message it gave up on.",
        "properties": {
            HEADER_MESSAGE_ID: {
                **text,
                "description": "`<consumer>:<stream>:<sequence>` of the original message.",
            },
            HEADER_ERROR: {**text, "description": "The last error, at most 1000 characters."},
            HEADER_CONSUMER: {**text, "description": "The durable consumer that gave up."},
            HEADER_ORIGINAL_SUBJECT: {**text, "description": "Subject the message was published on."},
            HEADER_ORIGINAL_STREAM: {**text, "description": "Stream the message was stored in."},
            HEADER_ORIGINAL_SEQUENCE: {**text, "description": "Stream sequence of the original message."},
            HEADER_ATTEMPTS: {**text, "description": "Delivery attempts made, as a decimal number."},
        },
        "required": [
            HEADER_ATTEMPTS,
            HEADER_CONSUMER,
            HEADER_ERROR,
            HEADER_ORIGINAL_SEQUENCE,
            HEADER_ORIGINAL_STREAM,
            HEADER_ORIGINAL_SUBJECT,
            HEADER_MESSAGE_ID,
        ],
    }


def _event_message(model: type[EventPayload]) -> dict[str, Any]:
    event_type = model.event_type()
    return {
        "name": event_type,
        "title": model.__name__,
        "summary": model.summary or (model.__doc__ or "").strip(),
        "contentType": CONTENT_TYPE_CLOUDEVENTS_JSON,
        "headers": {
            "type": "object",
            "allOf": [
                _ref("components", "schemas", EVENT_HEADERS_COMPONENT),
                {"properties": {HEADER_EVENT_TYPE: {"const": event_type}}},
            ],
        },
        "payload": {
            "type": "object",
            "description": f"A CloudEvents envelope whose `data` is a {model.__name__}.",
            "allOf": [
                _ref("components", "schemas", ENVELOPE_COMPONENT),
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": event_type},
                        "source": {"const": f"/edu/{model.service}"},
                        "dataschema": {"const": model.schema_uri()},
                        "data": _ref("components", "schemas", event_type),
                    },
                },
            ],
        },
        "tags": [{"name": model.service}],
        "externalDocs": {"url": model.schema_uri(), "description": "JSON Schema of `data`"},
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 description of every event the platform publishes on NATS JetStream."""
    models = registry.all()
    streams = {spec.service: spec for spec in registry.streams()}
    schemas: dict[str, Any] = {
        ENVELOPE_COMPONENT: _embed(envelope_schema(), f"#/components/schemas/{ENVELOPE_COMPONENT}"),
        EVENT_HEADERS_COMPONENT: _event_headers_schema(),
        DEAD_LETTER_HEADERS_COMPONENT: _dead_letter_headers_schema(),
    }
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    for model in models:
        event_type = model.event_type()
        subject = model.subject()
        stream: StreamSpec = streams[model.service]
        schemas[event_type] = _embed(event_schema(model), f"#/components/schemas/{event_type}")
        messages[event_type] = _event_message(model)
        channel = channels.setdefault(
            subject,
            {
                "address": subject,
                "title": subject,
                "description": f"Events of the {model.service} service about {model.entity} "
                f"({model.event}), stored in JetStream stream {stream.name}.",
                "servers": [_ref("servers", "production")],
                "messages": {},
                "tags": [{"name": model.service}],
                "x-jetstream-stream": stream.name,
            },
        )
        channel["messages"][event_type] = _ref("components", "messages", event_type)
        operations[f"send.{event_type}"] = {
            "action": "send",
            "title": f"{model.service} publishes {event_type}",
            "summary": model.summary or (model.__doc__ or "").strip(),
            "channel": _ref("channels", subject),
            "messages": [_ref("channels", subject, "messages", event_type)],
            "tags": [{"name": model.service}],
            "x-service": model.service,
        }

    messages[DEAD_LETTER_MESSAGE] = {
        "name": DEAD_LETTER_MESSAGE,
        "title": "Dead letter",
        "summary": "A message a consumer gave up on, with the original body unchanged.",
        "description": "The body is the original message's bytes, normally a CloudEvents envelope; a "
        "poison message may not conform to it.",
        "contentType": CONTENT_TYPE_CLOUDEVENTS_JSON,
        "headers": _ref("components", "schemas", DEAD_LETTER_HEADERS_COMPONENT),
        "payload": _ref("components", "schemas", ENVELOPE_COMPONENT),
    }
    channels[DEAD_LETTER_CHANNEL] = {
        "address": DEAD_LETTER_ADDRESS,
        "title": "Dead letters",
        "description": f"Messages a consumer gave up on after its retries, stored in JetStream stream "
        f"{DEAD_LETTER_STREAM} for inspection and replay.",
        "servers": [_ref("servers", "production")],
        "parameters": {
            "service": {"description": "The service running the consumer.", "examples": ["identity"]},
            "consumer": {"description": "The durable consumer's name.", "examples": ["identity-projector"]},
        },
        "messages": {DEAD_LETTER_MESSAGE: _ref("components", "messages", DEAD_LETTER_MESSAGE)},
        "x-jetstream-stream": DEAD_LETTER_STREAM,
    }
    operations["send.deadletter"] = {
        "action": "send",
        "title": "A consumer parks a message",
        "summary": "Any consumer sends a message it could not process to its dead-letter subject.",
        "channel": _ref("channels", DEAD_LETTER_CHANNEL),
        "messages": [_ref("channels", DEAD_LETTER_CHANNEL, "messages", DEAD_LETTER_MESSAGE)],
    }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "City smart-education platform events",
            "version": contracts_version(),
            "description": "Events the platform's services publish on NATS JetStream. Every message is a "
            "CloudEvents 1.0 structured event (`application/cloudevents+json`) whose `data` follows the "
            "JSON Schema named by `dataschema`. Each service publishes to its own stream `EDU_<SERVICE>` "
            "on subjects `edu.<service>.>`; the subject is the event type without its version.",
            "tags": [{"name": service} for service in registry.services()],
        },
        "defaultContentType": CONTENT_TYPE_CLOUDEVENTS_JSON,
        "servers": {
            "production": {
                "host": NATS_SERVER_HOST,
                "protocol": "nats",
                "description": "The platform's NATS cluster with JetStream (placeholder host).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def build_artefacts() -> dict[str, object]:
    """Every generated file: path relative to ``contracts/generated/`` → its JSON content."""
    artefacts: dict[str, object] = {schema_path(model): event_schema(model) for model in registry.all()}
    artefacts[ENVELOPE_SCHEMA_PATH] = envelope_schema()
    artefacts[MANIFEST_SCHEMA_PATH] = manifest_schema()
    artefacts["scopes.json"] = scopes_document()
    artefacts["asyncapi.json"] = asyncapi_document()
    return dict(sorted(artefacts.items()))


def dump_json(content: object) -> bytes:
    """The committed serialisation: sorted keys, 2-space indent, UTF-8, trailing newline."""
    return (json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def stale_files(directory: Path, artefacts: dict[str, object]) -> list[str]:
    """Files under ``directory`` that ``artefacts`` no longer produces."""
    if not directory.is_dir():
        return []
    present = {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()}
    return sorted(present - set(artefacts))


def drift(directory: Path = GENERATED_DIR) -> list[str]:
    """Generated paths that are missing, differ from ``build_artefacts()``, or are stale."""
    artefacts = build_artefacts()
    changed = [
        path
        for path, content in artefacts.items()
        if not (directory / path).is_file() or (directory / path).read_bytes() != dump_json(content)
    ]
    return sorted(changed + stale_files(directory, artefacts))


def write_artefacts(directory: Path = GENERATED_DIR) -> list[str]:
    """Write every artefact and remove stale files; returns the paths written or removed."""
    artefacts = build_artefacts()
    touched: list[str] = []
    for stale in stale_files(directory, artefacts):
        (directory / stale).unlink()
        touched.append(stale)
    for path, content in artefacts.items():
        target = directory / path
        data = dump_json(content)
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        touched.append(path)
    return sorted(touched)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.generate", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 if there is any")
    args = parser.parse_args(argv)
    if args.check:
        changed = drift()
        for path in changed:
            print(f"out of date: {GENERATED_DIR / path}", file=sys.stderr)
        if changed:
            print("run `make contracts` to regenerate", file=sys.stderr)
        return 1 if changed else 0
    for path in write_artefacts():
        print(f"updated {GENERATED_DIR / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
