"""Rendering the identity service's pages: Jinja2 (autoescaped), the page language, CSRF token, security headers."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from identity.web import csrf
from identity.web.i18n import HTML_LANG, LANG_COOKIE, language_of, requested_language, switch_url, translate

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"], default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def content_security_policy(form_action: Sequence[str] = ()) -> str:
    sources = " ".join(["'self'", *form_action])
    return (
        f"default-src 'self'; img-src 'self' data:; style-src 'self'; form-action {sources}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def add_page_headers(response: Response, *, form_action: Sequence[str] = ()) -> Response:
    """Security headers of an HTML page (or a page's redirect); JSON responses don't get them."""
    response.headers["Content-Security-Policy"] = content_security_policy(form_action)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def remember_language(request: Request, response: Response) -> None:
    """A ``?lang=`` choice is kept in the ``lang`` cookie for the following pages."""
    language = requested_language(request)
    if language is not None and request.cookies.get(LANG_COOKIE) != language:
        response.set_cookie(
            LANG_COOKIE, language, max_age=365 * 24 * 3600, httponly=True, samesite="lax", path="/",
            secure=csrf.cookie_secure(request),
        )  # fmt: skip


def page_context(request: Request) -> dict[str, Any]:
    """What every template can use: ``lang``, ``t()``, ``csrf_token``, the language switch, the platform name."""
    language = language_of(request)
    other = "en" if language == "zh" else "zh"
    return {
        "request": request,
        "lang": language,
        "html_lang": HTML_LANG[language],
        "t": partial(translate, language),
        "csrf_token": csrf.csrf_token(request),
        "csrf_field": csrf.CSRF_FIELD,
        "switch_url": switch_url(request, other),
        "switch_lang": HTML_LANG[other],
        "platform_name": request.app.state.settings.platform_name,
    }


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    form_action: Sequence[str] = (),
) -> HTMLResponse:
    """Render a page of ``templates/`` with the language, ``t()`` and a CSRF token in its context.

    ``form_action`` adds sources to the CSP's ``form-action`` (which Chromium also applies to the
    redirects after a form is posted): a consent page whose form ends in a redirect to a client's
    ``redirect_uri`` names that origin here.
    """
    body = environment.get_template(template).render({**page_context(request), **context})
    response = HTMLResponse(body, status_code=status_code, headers=headers)
    add_page_headers(response, form_action=form_action)
    remember_language(request, response)
    csrf.set_cookie_if_new(request, response)
    return response


def redirect(request: Request, url: str) -> RedirectResponse:
    """A 303 See Other from a page, with the page headers (and the language choice remembered)."""
    response = RedirectResponse(url, status_code=303)
    add_page_headers(response)
    remember_language(request, response)
    return response
