"""Names on the wire that producers, consumers and vendors must agree on: headers and dead letters."""

from __future__ import annotations

# Headers of every event message (the outbox relay sets them).
HEADER_MESSAGE_ID = "Nats-Msg-Id"  # JetStream de-duplication key = the CloudEvents id
HEADER_CONTENT_TYPE = "Content-Type"
HEADER_EVENT_TYPE = "ce-type"
HEADER_TRACEPARENT = "traceparent"
HEADER_TRACESTATE = "tracestate"

# Dead letters: a message a consumer gave up on, republished with why.
DEAD_LETTER_STREAM = "DEADLETTER"
DEAD_LETTER_ROOT = "deadletter"
DEAD_LETTER_ADDRESS = DEAD_LETTER_ROOT + ".{service}.{consumer}"
HEADER_ERROR = "Edu-Error"
HEADER_CONSUMER = "Edu-Consumer"
HEADER_ORIGINAL_SUBJECT = "Edu-Original-Subject"
HEADER_ORIGINAL_STREAM = "Edu-Original-Stream"
HEADER_ORIGINAL_SEQUENCE = "Edu-Original-Sequence"
HEADER_ATTEMPTS = "Edu-Attempts"

# JetStream drops a re-sent message with the same Nats-Msg-Id within this window.
DUPLICATE_WINDOW_SECONDS = 15 * 60


def dead_letter_subject(service: str, consumer: str) -> str:
    return DEAD_LETTER_ADDRESS.format(service=service, consumer=consumer)
