"""Prometheus metrics of webhook delivery (module-level: prometheus_client refuses a second collector per name)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ATTEMPTS = Counter(
    "edu_webhook_attempts_total",
    "Webhook delivery attempts, by outcome (delivered, http_error, timeout, network_error, unsafe_url)",
    ["outcome"],
)
DELIVERIES = Counter(
    "edu_webhook_deliveries_total",
    "Webhook deliveries that reached an end state, by outcome (delivered, dead_lettered, cancelled)",
    ["outcome"],
)
ATTEMPT_DURATION = Histogram(
    "edu_webhook_attempt_duration_seconds",
    "Time from sending a webhook to the endpoint's answer (or the failure), by outcome",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DELIVERY_LATENCY = Histogram(
    "edu_webhook_delivery_latency_seconds",
    "Time from queueing a webhook delivery to its successful delivery (retries included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 86400.0),
)
