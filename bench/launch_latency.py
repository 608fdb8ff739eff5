"""LTI 1.3 launch latency: the platform time a launch adds, through the real app store over HTTP.

One launch is what the platform does between a teacher's click and the tool receiving its id_token:

  1. ``POST /launches``   the teacher's token is verified, the installation, school role, class and restriction
                          are checked, the one-time launch is stored, the tool's login initiation URL returned;
  2. (the tool's login initiation answers with a redirect to our authorize endpoint: the tool's time, not ours;
     the bench builds that request from the URL's parameters, as PyLTI1p3 does);
  3. ``GET /lti/authorize`` the hints are matched and the launch marked used, the id_token with the LTI claims
                          signed (RS256), the usage event written to the outbox, the auto-posting form returned.

The app store runs with uvicorn (kit.testing.live_server) on a migrated database holding a small city (one school,
its class of 30 pupils), with its NATS link and outbox relay running. Launches run one at a time from one httpx
client. Side by side, the baseline: the same number of HTTP round trips to the bare ``/healthz`` endpoint, so the
difference is what launch logic adds over the HTTP stack and the framework.

    .venv/bin/python bench/launch_latency.py                      # SQLite, 500 launches
    .venv/bin/python bench/launch_latency.py --launches 2000
    .venv/bin/python bench/launch_latency.py --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_average

from appstore.config import AppStoreSettings
from appstore.main import create_app, migrate
from appstore.testing import build_city
from appstore.testing_launch import add_class, add_pupil, install, listed_app, lti_launch, manifest
from kit.natsserver import NatsServer
from kit.testing import TestIssuer, live_server, scratch_postgres_database

TARGET_MS = 20.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@contextlib.contextmanager
def database(postgres: str | None) -> Iterator[str]:
    if postgres:
        with scratch_postgres_database(postgres, prefix="bench_launch") as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/appstore.db"


def summary(name: str, samples: list[float]) -> str:
    return (
        f"{name:<28} p50 {percentile(samples, 0.5):6.2f}  p95 {percentile(samples, 0.95):6.2f}  "
        f"p99 {percentile(samples, 0.99):6.2f}  mean {statistics.fmean(samples):6.2f}  max {max(samples):7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launches", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--postgres", help="a PostgreSQL admin URL; a scratch database is made and dropped")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as nats_dir, database(args.postgres) as url:
        nats = NatsServer(Path(nats_dir) / "nats", log_file=Path(nats_dir) / "nats.log")
        nats.start()
        try:
            run(url, nats.url, args.launches, args.warmup)
        finally:
            nats.stop()


def run(database_url: str, nats_url: str, launches: int, warmup: int) -> None:
    settings = AppStoreSettings(
        environment="test", database_url=database_url, nats_url=nats_url, log_json=False, log_level="WARNING",
        platform_base_url="https://platform.bench",
    )  # fmt: skip
    migrate(settings)
    issuer = TestIssuer()
    app = create_app(settings)
    # The city's identity and enrollment streams do not exist here: their consumers' retries are not news.
    logging.getLogger("kit.inbox").setLevel(logging.ERROR)
    issuer.trust(app)
    city = build_city(app.state.database, issuer)
    tool = listed_app(app.state.database, manifest(launch=lti_launch(), scopes=("openid", "profile", "roster.read")))
    installation = install(app.state.database, city, tool, city.school_a1, scopes="openid profile roster.read")
    class_id = add_class(city, city.school_a1, "五年级2班", teachers=("a1_teacher",))
    for number in range(30):
        add_pupil(city, f"pupil{number}", f"学生{number:02d}", city.school_a1, class_id)
    headers = city.token("a1_teacher", "apps.read", expires_in=3600)
    body = {"installation_id": installation, "class_id": class_id}

    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as http:

        def launch() -> tuple[float, float]:
            started = time.perf_counter()
            response = http.post("/launches", json=body, headers=headers)
            created = time.perf_counter()
            assert response.status_code == 201, response.text
            params = {key: values[0] for key, values in parse_qs(urlsplit(response.json()["url"]).query).items()}
            request = {
                "scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
                "client_id": params["client_id"], "redirect_uri": params["target_link_uri"],
                "login_hint": params["login_hint"], "lti_message_hint": params["lti_message_hint"],
                "state": "bench", "nonce": "bench-nonce",
            }  # fmt: skip
            before_authorize = time.perf_counter()
            page = http.get("/lti/authorize", params=request)
            finished = time.perf_counter()
            assert page.status_code == 200 and 'name="id_token"' in page.text, page.text[:300]
            return (created - started) * 1000, (finished - before_authorize) * 1000

        def baseline() -> float:
            started = time.perf_counter()
            for _ in range(2):
                assert http.get("/healthz").status_code == 200
            return (time.perf_counter() - started) * 1000

        for _ in range(warmup):
            launch()
            baseline()
        create_ms, authorize_ms, total_ms, base_ms = [], [], [], []
        load_before = load_average()
        for _ in range(launches):  # interleaved, so both see the same machine
            created, authorized = launch()
            create_ms.append(created)
            authorize_ms.append(authorized)
            total_ms.append(created + authorized)
            base_ms.append(baseline())
        load_after = load_average()

    print(f"LTI launch latency: {launches} launches, one at a time, {app.state.database.dialect}, over HTTP")
    print(f"load average before {load_before}, after {load_after}")
    print(summary("POST /launches", create_ms))
    print(summary("GET /lti/authorize", authorize_ms))
    print(summary("launch (both)", total_ms))
    print(summary("baseline (2 x /healthz)", base_ms))
    added = [total - base for total, base in zip(total_ms, base_ms, strict=True)]
    print(summary("added over baseline", added))
    ratio = percentile(total_ms, 0.5) / percentile(base_ms, 0.5)
    print(f"ratio launch/baseline at p50: {ratio:.1f}x")
    for share in (0.5, 0.95, 0.99):
        value = percentile(total_ms, share)
        verdict = "under" if value < TARGET_MS else "OVER"
        print(f"launch p{round(share * 100)} {value:6.2f} ms: {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
