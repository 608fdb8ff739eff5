"""“我的应用授权”: the apps a person (or their child) authorised, withdrawal, and guardians' decisions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from contracts.scopes import SCOPES_BY_ID
from identity.oauth import consent as consents
from identity.oauth.models import GuardianConsentRequest, OAuthClient
from identity.oauth.router import run_exchange
from identity.oauth.server import Exchange
from identity.people.models import Person
from identity.web.csrf import verify_csrf
from identity.web.i18n import language_of, local_time, translate
from identity.web.sessions import login_redirect, signed_in
from identity.web.templating import render

router = APIRouter(include_in_schema=False)


def _scope_text(scope: str, language: str) -> str:
    names = []
    for scope_id in scope.split():
        item = SCOPES_BY_ID.get(scope_id)
        if item is not None:
            names.append(item.description_en if language == "en" else item.description_zh)
    return "；".join(names) if language == "zh" else "; ".join(names)


def _page(ex: Exchange, person: Person, language: str) -> dict[str, Any]:
    def consent_rows(owner: Person) -> list[dict[str, Any]]:
        rows = []
        for consent in consents.consents_of(ex.session, owner.id):
            client = ex.session.get(OAuthClient, consent.client_id)
            rows.append(
                {
                    "client_id": consent.client_id,
                    "client_name": client.client_name if client else consent.client_id,
                    "person_id": owner.id,
                    "scopes": _scope_text(consent.scope, language),
                    "granted_at": local_time(consent.granted_at, language),
                    "by_guardian": consent.granted_by != owner.id,
                }
            )
        return rows

    children = consents.children_of(ex.session, person.id) if person.kind == "guardian" else []
    groups = [{"child": None, "consents": consent_rows(person)}]
    groups += [{"child": child.name, "consents": consent_rows(child)} for child in children]
    requests = []
    names = {child.id: child.name for child in children}
    for pending in consents.pending_requests(ex.session, list(names)):
        client = ex.session.get(OAuthClient, pending.client_id)
        requests.append(
            {
                "id": pending.id,
                "client_name": client.client_name if client else pending.client_id,
                "child": names[pending.student_id],
                "scopes": [_scope_text(scope_id, language) for scope_id in pending.scope.split()],
            }
        )
    return {"groups": groups, "requests": requests}


def _message(key: str, language: str, **params: Any) -> dict[str, Any]:
    return {"message": translate(language, key, **params), "message_kind": "success"}


@router.get("/account/apps")
async def my_apps(request: Request) -> Response:
    """The apps this person, and each child in their care, have authorised."""
    language = language_of(request)

    def work(ex: Exchange) -> dict[str, Any] | None:
        login = signed_in(request, ex.session)
        return None if login is None else _page(ex, login.person, language)

    context = await run_exchange(request, work)
    if context is None:
        return login_redirect(request, "/account/apps")
    return render(request, "account_apps.html", {**context, "message": None, "message_kind": ""})


@router.post("/account/apps/withdraw")
async def withdraw(request: Request) -> Response:
    """Withdraw consent (one's own, or a child's as their guardian); the app's tokens are revoked."""
    form = await verify_csrf(request)
    language = language_of(request)

    def work(ex: Exchange) -> dict[str, Any] | None:
        login = signed_in(request, ex.session)
        if login is None:
            return None
        person = login.person
        owner_id = form.get("person_id") or person.id
        if owner_id != person.id and not consents.is_guardian_of(ex.session, person.id, owner_id):
            owner_id = person.id  # nobody withdraws for a stranger; fall back to one's own consents
        owner = ex.session.get(Person, owner_id)
        assert owner is not None
        client_id = form.get("client_id", "")
        client = ex.session.get(OAuthClient, client_id)
        count = 0
        if client is not None:
            ex.origin = replace(ex.origin, person_id=person.id)
            count = consents.withdraw(
                ex.session, person=owner, client_id=client_id, withdrawn_by=person.id, origin=ex.origin
            )
        ex.session.flush()
        page = _page(ex, person, language)
        if client is not None:
            page.update(_message("apps.withdrawn", language, client=client.client_name, count=count))
        return page

    context = await run_exchange(request, work)
    if context is None:
        return login_redirect(request, "/account/apps")
    return render(request, "account_apps.html", {"message": None, "message_kind": "", **context})


@router.post("/account/apps/requests/{request_id}")
async def decide_request(request_id: str, request: Request) -> Response:
    """A guardian agrees to, or declines, an app's request for their child's personal information."""
    form = await verify_csrf(request)
    language = language_of(request)
    approve = form.get("decision") == "approve"

    def work(ex: Exchange) -> dict[str, Any] | None:
        login = signed_in(request, ex.session)
        if login is None:
            return None
        guardian = login.person
        pending = ex.session.get(GuardianConsentRequest, request_id)
        message: dict[str, Any] = {}
        if (
            pending is not None
            and pending.decided_at is None
            and consents.is_guardian_of(ex.session, guardian.id, pending.student_id)
        ):
            ex.origin = replace(ex.origin, person_id=guardian.id)
            consents.decide_request(ex.session, pending, guardian=guardian, approve=approve, origin=ex.origin)
            message = _message("apps.approved" if approve else "apps.declined", language)
        ex.session.flush()
        return {**_page(ex, guardian, language), **message}

    context = await run_exchange(request, work)
    if context is None:
        return login_redirect(request, "/account/apps")
    return render(request, "account_apps.html", {"message": None, "message_kind": "", **context})
