from metering.testing import app, city, client, issuer, settings

__all__ = ["app", "city", "client", "issuer", "settings"]
