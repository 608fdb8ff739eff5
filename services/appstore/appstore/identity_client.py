"""The app store's calls to identity's internal client-registration API, with its own platform client.

Each app is one OAuth client at identity (``App.client_id``), registered or updated when a school installs the app
and when its vendor asks for credentials. The app store authenticates with a client-credentials token for the
``clients.manage`` scope, cached until shortly before it expires. Routes are synchronous (run in a thread), so this
client is too. Identity being slow or down is a 503 the caller can retry, never a 500.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from appstore.apps.models import App
from appstore.config import AppStoreSettings
from appstore.subjects import sector_identifier
from contracts.manifest import AppManifestV1, OidcLaunch
from kit.errors import BadGateway, ServiceUnavailable

logger = logging.getLogger("appstore.identity")

SCOPE_CLIENTS_MANAGE = "clients.manage"
#: Renew the platform token this long before identity says it expires, so no call carries a stale one.
TOKEN_RENEWAL_MARGIN_SECONDS = 30.0


class IdentityUnavailable(ServiceUnavailable):
    """Identity did not answer in time, or could not be reached."""

    slug = "appstore/identity-unavailable"
    title_zh = "身份服务暂不可用"
    title_en = "Identity service unavailable"

    def __init__(self) -> None:
        super().__init__(
            "身份服务暂不可用，请稍后重试；The identity service is unavailable, please try again shortly.",
            headers={"Retry-After": "5"},
        )


class IdentityRefused(BadGateway):
    """Identity refused a registration the app store sent (a manifest it cannot accept as a client)."""

    slug = "appstore/identity-refused"
    title_zh = "身份服务拒绝了应用的客户端登记"
    title_en = "Identity refused the app's client registration"

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(
            "身份服务拒绝登记该应用的 OAuth 客户端，请联系平台运维；"
            f"The identity service refused the app's OAuth client (HTTP {status}).",
            identity_status=status,
            identity_errors=problem.get("errors", []),
        )


class IdentityClient:
    """Synchronous client of identity's ``/oauth/clients`` API for the app store's platform client."""

    def __init__(self, settings: AppStoreSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self._client_id = settings.identity_client_id
        self._client_secret = settings.identity_client_secret.get_secret_value()
        self._http = httpx.Client(
            base_url=settings.identity_internal_url.rstrip("/"),
            timeout=settings.identity_timeout_seconds,
            transport=transport,
            trust_env=False,
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires_at = 0.0

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------------------ transport

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:  # timeouts, refused connections, broken responses
            logger.warning("identity call %s %s failed: %s", method, path, error)
            raise IdentityUnavailable() from error

    def _platform_token(self, *, renew: bool = False) -> str:
        with self._lock:
            if not renew and self._token is not None and time.monotonic() < self._token_expires_at:
                return self._token
            response = self._send(
                "POST",
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": SCOPE_CLIENTS_MANAGE},
                auth=(self._client_id, self._client_secret),
            )
            if response.status_code != 200:
                # The app store's own credentials are wrong: an operator must fix them; callers can only wait.
                logger.error("identity refused the app store's client credentials: %s", response.text[:500])
                raise IdentityUnavailable()
            body = response.json()
            self._token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 300))
            self._token_expires_at = time.monotonic() + max(lifetime - TOKEN_RENEWAL_MARGIN_SECONDS, 1.0)
            return self._token

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, path, headers={"Authorization": f"Bearer {self._platform_token()}"}, **kwargs)
        if response.status_code == 401:  # the cached token was revoked or the key rotated: one fresh try
            token = self._platform_token(renew=True)
            response = self._send(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        if response.status_code >= 500:
            raise IdentityUnavailable()
        return response

    @staticmethod
    def _expect(response: httpx.Response, *statuses: int) -> dict[str, Any]:
        if response.status_code not in statuses:
            try:
                problem = response.json()
            except ValueError:
                problem = {}
            raise IdentityRefused(response.status_code, problem if isinstance(problem, dict) else {})
        body: dict[str, Any] = response.json()
        return body

    # ------------------------------------------------------------------------------------------ clients

    def ensure_client(self, app: App, manifest: AppManifestV1) -> dict[str, Any]:
        """Register the app's OAuth client at identity, or bring its name, redirect URIs and scopes up to date."""
        redirect_uris = list(manifest.launch.redirect_uris) if isinstance(manifest.launch, OidcLaunch) else []
        logout_uris = list(manifest.launch.post_logout_redirect_uris) if isinstance(manifest.launch, OidcLaunch) else []
        scope = " ".join(manifest.scope_ids)
        # An LTI tool is launched by the app store, not by identity's authorization endpoint: no code grant.
        grant_types = [*(["authorization_code", "refresh_token"] if redirect_uris else []), "client_credentials"]
        existing = self._call("GET", f"/oauth/clients/{app.client_id}")
        if existing.status_code == 404:
            registration = {
                "client_id": app.client_id,
                "client_name": manifest.name.zh_cn,
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": grant_types,
                "redirect_uris": redirect_uris,
                "post_logout_redirect_uris": logout_uris,
                "scope": scope,
                "subject_type": "pairwise",
                "sector_identifier": sector_identifier(app.id),
                "first_party": False,
                "app_id": app.id,
                "owner_org_id": None,
            }
            return self._expect(self._call("POST", "/oauth/clients", json=registration), 201)
        self._expect(existing, 200)
        changes = {
            "client_name": manifest.name.zh_cn,
            "redirect_uris": redirect_uris,
            "post_logout_redirect_uris": logout_uris,
            "scope": scope,
            "grant_types": grant_types,  # a version may move the app from LTI to OIDC or back
        }
        return self._expect(self._call("PATCH", f"/oauth/clients/{app.client_id}", json=changes), 200)

    def rotate_secret(self, client_id: str) -> str:
        """A new client secret for the app's client; the previous one stops working at once."""
        body = self._expect(self._call("POST", f"/oauth/clients/{client_id}/secret"), 200)
        return str(body["client_secret"])


def get_identity_client(request: Request) -> IdentityClient:
    client: IdentityClient = request.app.state.identity_client
    return client


IdentityClientDep = Annotated[IdentityClient, Depends(get_identity_client)]
