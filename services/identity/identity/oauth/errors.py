"""Failures of the client-registration API (problem+json); the OAuth endpoints answer with RFC 6749 errors."""

from __future__ import annotations

from kit.errors import InvalidInput, NotFound


class ClientNotFound(NotFound):
    slug = "identity/oauth-client-not-found"
    title_zh = "OAuth 客户端不存在"
    title_en = "OAuth client not found"


class InvalidClientMetadata(InvalidInput):
    slug = "identity/invalid-client-metadata"
    title_zh = "客户端登记信息不正确"
    title_en = "Invalid client metadata"
