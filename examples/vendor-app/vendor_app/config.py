"""The sample app's configuration, read from the environment (prefix ``VENDOR_APP_``).

Everything a vendor receives from the platform when its app is installed goes here: the platform's URL (the
gateway, which is also the OpenID Connect issuer), the OAuth client of each app, the LTI registration and the
webhook secret. Standard library only: a vendor app should not need the platform's settings machinery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PREFIX = "VENDOR_APP_"


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """Where the sample app runs and how it reaches the platform."""

    port: int = 8110
    base_url: str = "http://127.0.0.1:8110"
    # The platform's one public entry (the gateway); also the OIDC issuer and the LTI platform's issuer.
    platform_url: str = "http://127.0.0.1:8100"

    # OIDC sign-in (the app whose manifest has launch type "oidc").
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scopes: str = "openid profile roster.read"

    # LTI 1.3 (the app whose manifest has launch type "lti_1p3"). Empty URLs default to the platform's.
    lti_client_id: str = ""
    lti_issuer: str = ""
    lti_auth_login_url: str = ""
    lti_token_url: str = ""
    lti_jwks_url: str = ""
    # Deployments (installations) the tool accepts; empty: any deployment the platform signs a launch for.
    lti_deployment_ids: tuple[str, ...] = ()
    # The tool's RSA private key (PEM) for LTI Advantage client assertions; created on first start if missing.
    tool_key_file: Path = Path("var/vendor-app/tool-key.pem")

    # The webhook secrets (``whsec_…``) shown to the vendor, one per app (and two during a rotation).
    webhook_secrets: tuple[str, ...] = ()

    # Usage reporting to the platform's metering (POST /api/metering/usage-reports); `make run` turns it on.
    metering_enabled: bool = False
    metering_url: str = ""
    metering_client_id: str = ""
    metering_client_secret: str = ""
    # The unit's Chinese name in the app's price plan (reported_unit_name), sent for metering to check; empty: omitted.
    reported_unit: str = ""

    # Whether cookies need Secure / SameSite=None (the app behind https, launched from another site).
    secure_cookies: bool = False
    timeout_seconds: float = 10.0

    @property
    def issuer(self) -> str:
        return self.platform_url.rstrip("/")

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def oidc_redirect_uri(self) -> str:
        return f"{self.base_url.rstrip('/')}/oidc/callback"

    @property
    def lti_launch_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/lti/launch"

    @property
    def lti_platform_issuer(self) -> str:
        return (self.lti_issuer or self.issuer).rstrip("/")

    @property
    def lti_platform_auth_login_url(self) -> str:
        return self.lti_auth_login_url or f"{self.issuer}/api/appstore/lti/authorize"

    @property
    def lti_platform_token_url(self) -> str:
        return self.lti_token_url or f"{self.issuer}/api/appstore/lti/token"

    @property
    def lti_platform_jwks_url(self) -> str:
        return self.lti_jwks_url or f"{self.issuer}/api/appstore/lti/jwks"

    @property
    def metering_endpoint(self) -> str:
        return self.metering_url or f"{self.issuer}/api/metering/usage-reports"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``VENDOR_APP_*`` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            return env.get(PREFIX + name, default).strip()

        port = int(get("PORT", "8110"))
        defaults = cls()
        return cls(
            port=port,
            base_url=get("BASE_URL", f"http://127.0.0.1:{port}").rstrip("/"),
            platform_url=get("PLATFORM_URL", defaults.platform_url).rstrip("/"),
            oidc_client_id=get("OIDC_CLIENT_ID"),
            oidc_client_secret=get("OIDC_CLIENT_SECRET"),
            oidc_scopes=get("OIDC_SCOPES", defaults.oidc_scopes),
            lti_client_id=get("LTI_CLIENT_ID"),
            lti_issuer=get("LTI_ISSUER"),
            lti_auth_login_url=get("LTI_AUTH_LOGIN_URL"),
            lti_token_url=get("LTI_TOKEN_URL"),
            lti_jwks_url=get("LTI_JWKS_URL"),
            lti_deployment_ids=tuple(item for item in get("LTI_DEPLOYMENT_IDS").replace(",", " ").split() if item),
            tool_key_file=Path(get("TOOL_KEY_FILE", str(defaults.tool_key_file))),
            webhook_secrets=tuple(get("WEBHOOK_SECRET").replace(",", " ").split()),
            metering_enabled=_flag(get("METERING_ENABLED", "false")),
            metering_url=get("METERING_URL"),
            metering_client_id=get("METERING_CLIENT_ID"),
            metering_client_secret=get("METERING_CLIENT_SECRET"),
            reported_unit=get("REPORTED_UNIT", defaults.reported_unit),
            secure_cookies=_flag(get("SECURE_COOKIES", "false")),
            timeout_seconds=float(get("TIMEOUT_SECONDS", "10")),
        )
