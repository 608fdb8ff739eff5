"""The data-sharing platform client against the simulator, over HTTP, with signatures and failures as in production."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from enrollment.dataexchange import (
    DEMO_RECORDS_CSV,
    DataExchange,
    DataExchangeRejected,
    DataExchangeUnavailable,
    Dataset,
    HttpDataExchange,
)
from enrollment.dataexchange.simulator import (
    RecordSet,
    RecordsFileError,
    SimulatedDataExchange,
    create_simulator_app,
    load_records,
)

APP_ID = "enrollment-test"
SECRET = "s3cret-for-tests-only"
BASE_URL = "http://dataexchange.test"


@pytest.fixture(scope="module")
def records() -> RecordSet:
    return load_records(DEMO_RECORDS_CSV)


def id_of(records: RecordSet, name: str) -> str:
    (id_number,) = (id_number for id_number, registered in records.names.items() if registered == name)
    return id_number


@pytest.fixture
def simulator_app(records: RecordSet) -> FastAPI:
    return create_simulator_app(records, app_id=APP_ID, secret=SECRET)


@pytest.fixture
def sent() -> list[httpx.Request]:
    """Every request the client put on the wire, in order (retries included)."""
    return []


@pytest.fixture
async def http_client(simulator_app: FastAPI, sent: list[httpx.Request]) -> AsyncIterator[httpx.AsyncClient]:
    async def remember(request: httpx.Request) -> None:
        sent.append(request)

    transport = httpx.ASGITransport(app=simulator_app)
    async with httpx.AsyncClient(transport=transport, event_hooks={"request": [remember]}) as client:
        yield client


def platform(
    client: httpx.AsyncClient,
    *,
    timeout_seconds: float = 2.0,
    retries: int = 2,
    clock: Callable[[], float] = time.time,
) -> HttpDataExchange:
    """The client as the service configures it, with a short backoff so that retry tests stay fast."""
    return HttpDataExchange(
        BASE_URL,
        app_id=APP_ID,
        secret=SECRET,
        client=client,
        timeout_seconds=timeout_seconds,
        retries=retries,
        backoff_seconds=0.01,
        clock=clock,
    )


@pytest.fixture
def exchange(http_client: httpx.AsyncClient) -> HttpDataExchange:
    return platform(http_client)


# --- lookups ------------------------------------------------------------------------------------------------------


async def test_household_of_a_registered_child_names_address_guardians_and_provenance(
    exchange: HttpDataExchange, records: RecordSet
) -> None:
    before = datetime.now(UTC)
    answer = await exchange.household(id_of(records, "王子轩"))
    assert answer.record is not None
    assert answer.record.address == "滨江区春晓路1号春晓花园3幢2单元501室"
    assert answer.record.district_code == "330108"
    assert answer.record.relation_to_head == "子"
    assert answer.record.registered_on == date(2019, 11, 2)
    assert set(answer.record.guardian_id_numbers) == {id_of(records, "王建国"), id_of(records, "李静")}
    assert answer.source == Dataset.HOUSEHOLD == "公安户籍"
    assert answer.reference.startswith("SIM-")
    assert before - timedelta(seconds=1) <= answer.checked_at <= datetime.now(UTC)


async def test_household_of_a_child_registered_elsewhere_is_none_with_its_source(
    exchange: HttpDataExchange, records: RecordSet
) -> None:
    answer = await exchange.household(id_of(records, "黄诗琪"))
    assert answer.record is None
    assert answer.source == "公安户籍"
    assert answer.reference


async def test_jointly_owned_property_is_listed_once_for_both_owners(
    exchange: HttpDataExchange, records: RecordSet
) -> None:
    answer = await exchange.properties([id_of(records, "王建国"), id_of(records, "李静")])
    assert [record.certificate_number for record in answer.record] == ["浙(2017)杭州市不动产权第0081234号"]
    assert answer.record[0].address == "滨江区春晓路1号春晓花园3幢2单元501室"
    assert answer.source == "不动产登记"


async def test_property_shared_with_a_grandparent_is_found_through_the_father(
    exchange: HttpDataExchange, records: RecordSet
) -> None:
    answer = await exchange.properties([id_of(records, "韩冬"), id_of(records, "曹蕾")])
    (record,) = answer.record
    assert set(record.owner_id_numbers) == {id_of(records, "韩冬"), id_of(records, "韩建华")}


async def test_family_renting_has_no_property(exchange: HttpDataExchange, records: RecordSet) -> None:
    answer = await exchange.properties([id_of(records, "何军"), id_of(records, "罗佳")])
    assert answer.record == ()
    assert answer.source == "不动产登记"


async def test_residence_permit_found_and_not_found(exchange: HttpDataExchange, records: RecordSet) -> None:
    found = await exchange.residence_permit(id_of(records, "张磊"))
    assert found.record is not None
    assert found.record.district_code == "330108"
    assert (found.record.issued_on, found.record.valid_until) == (date(2025, 9, 10), date(2026, 9, 9))
    assert found.source == "公安居住证"
    missing = await exchange.residence_permit(id_of(records, "王建国"))
    assert missing.record is None


async def test_social_insurance_found_and_not_found(exchange: HttpDataExchange, records: RecordSet) -> None:
    found = await exchange.social_insurance(id_of(records, "张磊"))
    assert found.record is not None
    assert (found.record.months, found.record.since, found.record.city) == (36, date(2023, 5, 1), "杭州市")
    assert found.source == "人社社保缴费"
    short = await exchange.social_insurance(id_of(records, "赵勇"))
    assert short.record is not None and short.record.months == 6
    missing = await exchange.social_insurance(id_of(records, "王建国"))
    assert missing.record is None


async def test_real_name_check(exchange: HttpDataExchange, records: RecordSet) -> None:
    id_number = id_of(records, "李静")
    assert (await exchange.verify_identity(id_number, "李静")).record.matches
    assert not (await exchange.verify_identity(id_number, "李晶")).record.matches
    unknown = "11010519491231002X"
    answer = await exchange.verify_identity(unknown, "李静")
    assert not answer.record.matches
    assert answer.source == "公安人口库实名核验"


async def test_guardianship_by_household_record_by_birth_certificate_or_not_at_all(
    exchange: HttpDataExchange, records: RecordSet
) -> None:
    by_household = await exchange.verify_guardianship(id_of(records, "王子轩"), id_of(records, "李静"))
    assert (by_household.record.matches, by_household.record.basis, by_household.source) == (
        True,
        "household",
        "公安户籍",
    )
    # 马俊杰 is registered in his grandparents' household; only the birth certificate names his parents.
    by_birth = await exchange.verify_guardianship(id_of(records, "马俊杰"), id_of(records, "马超"))
    assert (by_birth.record.matches, by_birth.record.basis, by_birth.source) == (
        True,
        "birth_certificate",
        "卫健出生医学证明",
    )
    stranger = await exchange.verify_guardianship(id_of(records, "王子轩"), id_of(records, "陈伟"))
    assert (stranger.record.matches, stranger.record.basis) == (False, None)


async def test_id_numbers_travel_in_bodies_never_in_urls(
    exchange: HttpDataExchange, records: RecordSet, sent: list[httpx.Request]
) -> None:
    child, father = id_of(records, "王子轩"), id_of(records, "王建国")
    await exchange.household(child)
    await exchange.properties([father])
    await exchange.residence_permit(father)
    await exchange.social_insurance(father)
    await exchange.verify_identity(father, "王建国")
    await exchange.verify_guardianship(child, father)
    assert len(sent) == 6
    for request in sent:
        assert child not in str(request.url) and father not in str(request.url)
        assert request.url.query == b""
        assert father in request.content.decode() or child in request.content.decode()


# --- signatures ---------------------------------------------------------------------------------------------------


async def test_wrong_secret_is_rejected_without_retrying(
    http_client: httpx.AsyncClient, records: RecordSet, sent: list[httpx.Request]
) -> None:
    impostor = HttpDataExchange(BASE_URL, app_id=APP_ID, secret="not-the-secret", client=http_client, retries=3)
    with pytest.raises(DataExchangeRejected) as raised:
        await impostor.household(id_of(records, "王子轩"))
    assert raised.value.status == 401
    assert raised.value.detail is not None and "signature does not match" in raised.value.detail
    assert "；" in str(raised.value)
    assert len(sent) == 1


async def test_unknown_app_id_is_rejected(http_client: httpx.AsyncClient, records: RecordSet) -> None:
    stranger = HttpDataExchange(BASE_URL, app_id="someone-else", secret=SECRET, client=http_client)
    with pytest.raises(DataExchangeRejected) as raised:
        await stranger.household(id_of(records, "王子轩"))
    assert raised.value.status == 401


async def test_a_replayed_request_is_refused(
    exchange: HttpDataExchange, http_client: httpx.AsyncClient, records: RecordSet, sent: list[httpx.Request]
) -> None:
    await exchange.household(id_of(records, "王子轩"))
    (original,) = sent
    replay = await http_client.post(original.url, content=original.content, headers=original.headers)
    assert replay.status_code == 401
    assert replay.headers["content-type"].startswith("application/problem+json")
    assert replay.json()["code"] == "replay"


async def test_a_tampered_body_is_refused(
    exchange: HttpDataExchange, http_client: httpx.AsyncClient, records: RecordSet, sent: list[httpx.Request]
) -> None:
    await exchange.household(id_of(records, "王子轩"))
    (original,) = sent
    headers = dict(original.headers)
    headers["x-nonce"] = "a-fresh-nonce-0000000000"
    tampered = json.dumps({"id_number": id_of(records, "陈思涵")}).encode()
    headers.pop("content-length")
    answer = await http_client.post(original.url, content=tampered, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == "signature"


@pytest.mark.parametrize(("client_offset", "accepted"), [(-299, True), (-301, False), (301, False)])
async def test_timestamps_outside_the_five_minute_window_are_refused(
    records: RecordSet, client_offset: int, accepted: bool
) -> None:
    platform_now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC).timestamp()
    app = create_simulator_app(records, app_id=APP_ID, secret=SECRET, clock=lambda: platform_now)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        skewed = platform(client, clock=lambda: platform_now + client_offset)
        if accepted:
            answer = await skewed.household(id_of(records, "王子轩"))
            # The time on the answer is the platform's, not the caller's.
            assert answer.checked_at == datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
        else:
            with pytest.raises(DataExchangeRejected) as raised:
                await skewed.household(id_of(records, "王子轩"))
            assert raised.value.status == 401
            assert raised.value.detail is not None and "300 s" in raised.value.detail


# --- failures -----------------------------------------------------------------------------------------------------


async def test_a_slow_platform_is_retried_then_reported_unavailable(
    http_client: httpx.AsyncClient, simulator_app: FastAPI, records: RecordSet, sent: list[httpx.Request]
) -> None:
    simulator_app.state.faults.latency_seconds = 0.3
    impatient = platform(http_client, timeout_seconds=0.05, retries=2)
    started = time.monotonic()
    with pytest.raises(DataExchangeUnavailable) as raised:
        await impatient.household(id_of(records, "王子轩"))
    assert time.monotonic() - started < 0.6
    assert len(sent) == 3
    assert "0.05" in str(raised.value)
    assert len({request.headers["x-nonce"] for request in sent}) == 3


async def test_a_slow_answer_within_the_timeout_arrives(
    http_client: httpx.AsyncClient, simulator_app: FastAPI, records: RecordSet, sent: list[httpx.Request]
) -> None:
    simulator_app.state.faults.latency_seconds = 0.02
    patient = platform(http_client, timeout_seconds=1.0)
    answer = await patient.household(id_of(records, "王子轩"))
    assert answer.record is not None
    assert len(sent) == 1


async def test_503_is_retried_until_the_platform_answers(
    exchange: HttpDataExchange, simulator_app: FastAPI, records: RecordSet, sent: list[httpx.Request]
) -> None:
    simulator_app.state.faults.fail_next = 2
    answer = await exchange.household(id_of(records, "王子轩"))
    assert answer.record is not None
    assert len(sent) == 3


async def test_503_on_every_attempt_is_unavailable(
    exchange: HttpDataExchange, simulator_app: FastAPI, records: RecordSet, sent: list[httpx.Request]
) -> None:
    simulator_app.state.faults.fail_next = 3
    with pytest.raises(DataExchangeUnavailable) as raised:
        await exchange.household(id_of(records, "王子轩"))
    assert raised.value.status == 503
    assert len(sent) == 3
    # The platform recovers; the next call gets through.
    assert (await exchange.household(id_of(records, "王子轩"))).record is not None


async def test_a_malformed_request_is_rejected_without_retrying(
    exchange: HttpDataExchange, sent: list[httpx.Request]
) -> None:
    with pytest.raises(DataExchangeRejected) as raised:
        await exchange.household("110105194912310021")
    assert raised.value.status == 422
    assert raised.value.detail is not None and "id_number: " in raised.value.detail
    assert len(sent) == 1


async def test_an_unreachable_platform_is_retried_then_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = HttpDataExchange(
        f"http://127.0.0.1:{closed_port}", app_id=APP_ID, secret=SECRET, retries=1, backoff_seconds=0.01
    )
    try:
        with pytest.raises(DataExchangeUnavailable) as raised:
            await unreachable.household("11010519491231002X")
        assert "ConnectError" in str(raised.value)
    finally:
        await unreachable.aclose()


# --- the simulator ------------------------------------------------------------------------------------------------


async def test_in_process_and_http_simulators_answer_the_same_for_every_demo_record(
    exchange: HttpDataExchange, records: RecordSet
) -> None:
    in_process = SimulatedDataExchange(records)
    implementations: list[DataExchange] = [in_process, exchange]
    for id_number, name in records.names.items():
        households = [await implementation.household(id_number) for implementation in implementations]
        properties = [await implementation.properties([id_number]) for implementation in implementations]
        permits = [await implementation.residence_permit(id_number) for implementation in implementations]
        insurance = [await implementation.social_insurance(id_number) for implementation in implementations]
        identity = [await implementation.verify_identity(id_number, name) for implementation in implementations]
        for local, remote in (households, properties, permits, insurance, identity):
            assert (local.record, local.source) == (remote.record, remote.source)
        assert identity[1].record.matches
    for child, birth in records.birth_certificates.items():
        for parent in birth.parent_id_numbers:
            checks = [await implementation.verify_guardianship(child, parent) for implementation in implementations]
            assert checks[0].record == checks[1].record and checks[1].record.matches


def test_demo_families_cover_every_admission_category(records: RecordSet) -> None:
    children = {child: birth.parent_id_numbers for child, birth in records.birth_certificates.items()}
    assert len(children) >= 20
    categories: dict[str, int] = {}
    for child, parents in children.items():
        born = date(int(child[6:10]), int(child[10:12]), int(child[12:14]))
        assert date(2019, 9, 1) <= born <= date(2020, 8, 31)
        owned = any(set(parents) & set(record.owner_id_numbers) for record in records.properties)
        registered = child in records.households
        insured = max((records.social_insurance[p].months for p in parents if p in records.social_insurance), default=0)
        permit = any(p in records.residence_permits for p in parents)
        if registered and owned:
            category = "household+property"
        elif registered:
            category = "household only"
        elif owned:
            category = "property only"
        elif permit and insured >= 12:
            category = "migrant, insured >= 12 months"
        elif permit:
            category = "migrant, insured < 12 months"
        else:
            category = "nothing"
        categories[category] = categories.get(category, 0) + 1
    assert categories == {
        "household+property": 7,
        "household only": 4,
        "property only": 3,
        "migrant, insured >= 12 months": 6,
        "migrant, insured < 12 months": 2,
    }


def test_a_bad_row_names_its_line(tmp_path: Path) -> None:
    header = "dataset,id_number,name\n"
    cases = {
        "person,11010519491231002X,张三\nperson,110105194912310021,李四\n": ":3: id_number",
        "person,11010519491231002X,张三\nperson,11010519491231002X,张三\n": ":3: person 11010519491231002X appears",
        "people,11010519491231002X,张三\n": ":2: dataset must be one of",
        "household,11010519491231002X,\n": ":2: a household row needs household_number",
    }
    for body, message in cases.items():
        path = tmp_path / "records.csv"
        path.write_text(header + body, encoding="utf-8")
        with pytest.raises(RecordsFileError, match=re.escape(message)):
            load_records(path)


# --- served over TCP, as `make run` does ----------------------------------------------------------------------------


@pytest.fixture
def served_simulator(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "DATAEXCHANGE_SECRET": SECRET}
    command = [sys.executable, "-m", "enrollment.dataexchange.simulator", "--csv", str(DEMO_RECORDS_CSV)]
    command += ["--port", str(port), "--app-id", APP_ID]
    log = (tmp_path / "simulator.log").open("w")
    process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "simulator.log").read_text()) from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


async def test_the_simulator_served_over_tcp_answers_the_http_client(served_simulator: str, records: RecordSet) -> None:
    remote = HttpDataExchange(served_simulator, app_id=APP_ID, secret=SECRET, timeout_seconds=5)
    try:
        answer = await remote.residence_permit(id_of(records, "张磊"))
        assert answer.record is not None and answer.record.permit_number == "330108202503101"
    finally:
        await remote.aclose()
