"""End to end: identity's directory reaches enrollment over NATS, and a vendor's app reads OneRoster rosters through
the gateway, confined to the school that installed it.

Real identity provider, real enrollment service, real gateway, real nats-server: the demo city is created in
identity, its events build enrollment's projection, the app gets a client-credentials token from identity through
the gateway and the gateway names the installing school to enrollment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from enrollment.config import EnrollmentSettings
from enrollment.directory.models import DirectoryOrganisation
from enrollment.main import create_app as create_enrollment
from enrollment.main import migrate as migrate_enrollment
from gateway.config import GatewaySettings
from gateway.installations import service as installations
from gateway.main import create_app as create_gateway
from gateway.main import migrate as migrate_gateway
from identity.config import IdentitySettings
from identity.demo import load as load_demo
from identity.main import create_app as create_identity
from identity.testing import register_client, settings
from kit.db import Database
from kit.natsserver import NatsServer
from kit.testing import live_server

__all__ = ["settings"]

ISSUER = "http://identity.test"
ONEROSTER = "/api/enrollment/ims/oneroster/rostering/v1p2"


@dataclass
class Platform:
    gateway_url: str
    identity_app: object
    enrollment_database: Database
    gateway_database: Database


@pytest.fixture
def platform(settings: IdentitySettings, nats_server: NatsServer, tmp_path: Path) -> Iterator[Platform]:
    identity_app = create_identity(settings)
    with live_server(identity_app) as identity_url:
        jwks = f"{identity_url}/.well-known/jwks.json"
        enrollment_settings = EnrollmentSettings(
            environment="test", database_url=f"sqlite:///{tmp_path / 'enrollment.db'}", nats_url=nats_server.url,
            token_issuer=ISSUER, jwks_url=jwks, log_json=False,
        )  # fmt: skip
        migrate_enrollment(enrollment_settings)
        enrollment_app = create_enrollment(enrollment_settings)
        with live_server(enrollment_app) as enrollment_url:
            gateway_settings = GatewaySettings(
                environment="test", database_url=f"sqlite:///{tmp_path / 'gateway.db'}", nats_url=nats_server.url,
                upstreams={"identity": identity_url, "enrollment": enrollment_url}, token_issuer=ISSUER,
                jwks_url=jwks, usage_spool_dir=tmp_path / "spool", log_json=False, installation_refresh_seconds=0.2,
            )  # fmt: skip
            migrate_gateway(gateway_settings)
            gateway_database = Database(gateway_settings.database_url)
            with live_server(create_gateway(gateway_settings)) as gateway_url:
                yield Platform(gateway_url, identity_app, enrollment_app.state.database, gateway_database)
            gateway_database.dispose()


def _wait_for_schools(database: Database, count: int, timeout: float = 20.0) -> dict[str, str]:
    """School name → id in enrollment's projection, once ``count`` schools have arrived."""
    deadline = time.monotonic() + timeout
    while True:
        with database.read_session() as session:
            schools = dict(
                session.exec(
                    select(DirectoryOrganisation.name, DirectoryOrganisation.id).where(
                        DirectoryOrganisation.kind == "school"
                    )
                ).all()
            )
        if len(schools) >= count or time.monotonic() > deadline:
            return schools
        time.sleep(0.1)


def test_an_installed_app_reads_only_its_schools_roster_through_the_gateway(platform: Platform) -> None:
    identity_app = platform.identity_app
    with identity_app.state.database.session() as session:  # type: ignore[attr-defined]
        load_demo(session, identity_app.state.cipher)  # type: ignore[attr-defined]
    schools = _wait_for_schools(platform.enrollment_database, 4)
    assert len(schools) == 4, "identity's organisations did not reach enrollment over NATS"
    installed, other = schools["厦门市思明区滨海实验小学"], schools["厦门市湖里区金山小学"]

    registered = register_client(
        identity_app,  # type: ignore[arg-type]
        client_name="班级花名册同步", grant_types=["client_credentials"],
        scope="roster.read roster.students.read", app_id="app-roster-sync",
    )  # fmt: skip
    with platform.gateway_database.session() as session:
        installations.install(
            session, client_id=registered.client_id, app_id="app-roster-sync", school_id=installed,
            scopes=["roster.read", "roster.students.read"],
        )  # fmt: skip
    issued = httpx.post(
        f"{platform.gateway_url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "roster.read roster.students.read"},
        auth=(registered.client_id, registered.secret or ""),
    )
    assert issued.status_code == 200, issued.text
    bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}

    deadline = time.monotonic() + 10
    while True:
        listed = httpx.get(f"{platform.gateway_url}{ONEROSTER}/schools", headers=bearer)
        if listed.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the gateway reads installations every 0.2 s
    assert listed.status_code == 200, listed.text
    assert [org["sourcedId"] for org in listed.json()["orgs"]] == [installed]
    assert listed.headers["X-Total-Count"] == "1"

    students = httpx.get(f"{platform.gateway_url}{ONEROSTER}/students", headers=bearer, params={"limit": 100})
    assert students.status_code == 200, students.text
    names = {user["givenName"] + user["familyName"] for user in students.json()["users"]}
    assert len(names) == 5, names  # the five demo pupils of the installing school, no one else's

    # The other school's data cannot be reached, neither through a collection nor by naming the school.
    other_school = httpx.get(f"{platform.gateway_url}{ONEROSTER}/schools/{other}", headers=bearer)
    assert other_school.status_code == 404
    by_path = httpx.get(f"{platform.gateway_url}{ONEROSTER}/schools/{other}/students", headers=bearer)
    assert by_path.status_code == 403
    assert other in by_path.json()["detail"]
