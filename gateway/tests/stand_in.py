"""A stand-in service for the gateway's own tests: a real HTTP service whose routes exercise the edge.

It is not a copy of any platform service: its catalogue (``STAND_IN_API``) declares routes with
the shapes the gateway must handle (school-scoped, open, uploads, slow, flaky, streamed, WebSocket),
and it serves the JWKS of the test signing key, standing in for the identity provider's keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from joserfc.jwk import RSAKey

from contracts.api import RouteSpec, ServiceApi, TenantLocator
from kit.testing import mint_access_token

ISSUER = "https://id.edu-platform.test"
AUDIENCE = "edu-platform"

STAND_IN_API = ServiceApi(
    service="standin",
    title="Stand-in service for gateway tests",
    routes=(
        RouteSpec(method="GET", path="/things/{thing_id}", summary="Echo", scopes=("org.read",), app_access="open"),
        RouteSpec(method="POST", path="/things", summary="Create", scopes=("org.write",)),
        RouteSpec(
            method="GET", path="/schools/{school_id}/roster", summary="School roster", scopes=("roster.read",),
            app_access="school", tenant=TenantLocator(source="path", name="school_id"),
        ),
        RouteSpec(
            method="GET", path="/roster", summary="Roster by query", scopes=("roster.read",),
            app_access="school", tenant=TenantLocator(source="query", name="school_id"),
        ),
        RouteSpec(
            method="GET", path="/rosters", summary="Rosters across schools", scopes=("roster.read",),
            app_access="installed",
        ),
        RouteSpec(method="GET", path="/platform-only", summary="Platform only", scopes=("org.read",)),
        RouteSpec(method="POST", path="/upload", summary="Upload", scopes=("org.write",), max_body_bytes=100_000),
        RouteSpec(method="GET", path="/slow", summary="Slow", scopes=("org.read",), timeout_seconds=0.5),
        RouteSpec(method="GET", path="/flaky", summary="Flaky", scopes=("org.read",)),
        RouteSpec(method="POST", path="/flaky", summary="Flaky write", scopes=("org.write",)),
        RouteSpec(method="GET", path="/stream", summary="Streamed", scopes=("org.read",), timeout_seconds=5),
        RouteSpec(method="GET", path="/limited", summary="Rate limited", scopes=("org.read",), rate_limit="3/minute"),
        RouteSpec(method="GET", path="/public", summary="Public", authenticated=False),
        RouteSpec(method="GET", path="/ws/echo", summary="WebSocket echo", scopes=("org.read",), websocket=True),
    ),
)  # fmt: skip


class StandIn:
    """The stand-in app plus what tests look at: calls seen, failures to inject."""

    def __init__(self, key: RSAKey) -> None:
        self.key = key
        self.flaky_failures = 0
        self.calls: dict[str, int] = {}
        self.app = self._build()

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/jwks.json")
        async def jwks() -> dict[str, Any]:
            return {"keys": [self.key.as_dict(private=False) | {"use": "sig", "alg": "RS256"}]}

        @app.get("/things/{thing_id}")
        async def echo(thing_id: str, request: Request) -> dict[str, Any]:
            self._count("things")
            return {
                "thing_id": thing_id,
                "path": request.url.path,
                "query": request.url.query,
                "headers": {name: value for name, value in request.headers.items()},
            }

        @app.post("/things", status_code=201)
        async def create(request: Request) -> dict[str, Any]:
            body = await request.json()
            return {"created": body}

        @app.get("/schools/{school_id}/roster")
        async def roster(school_id: str, request: Request) -> dict[str, Any]:
            self._count("roster")
            return {
                "school_id": school_id,
                "classes": ["一年级1班"],
                "app_schools": request.headers.get("x-edu-app-schools"),
            }

        @app.get("/roster")
        async def roster_by_query(school_id: str) -> dict[str, Any]:
            self._count("roster")
            return {"school_id": school_id}

        @app.get("/rosters")
        async def rosters(request: Request) -> dict[str, Any]:
            self._count("rosters")
            return {"app_schools": request.headers.get("x-edu-app-schools")}

        @app.get("/platform-only")
        async def platform_only() -> dict[str, str]:
            return {"ok": "yes"}

        @app.post("/upload")
        async def upload(request: Request) -> dict[str, int]:
            self._count("upload")
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
            return {"received": size}

        @app.get("/slow")
        async def slow(request: Request) -> dict[str, str]:
            self._count("slow")
            # Hangs until the caller gives up, so the test's server stops at once rather than waiting on it.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            return {"late": "yes"}

        @app.get("/flaky")
        async def flaky() -> JSONResponse:
            self._count("flaky")
            if self.flaky_failures > 0:
                self.flaky_failures -= 1
                return JSONResponse({"detail": "busy"}, status_code=503)
            return JSONResponse({"ok": True})

        @app.post("/flaky")
        async def flaky_write() -> JSONResponse:
            self._count("flaky_write")
            if self.flaky_failures > 0:
                self.flaky_failures -= 1
                return JSONResponse({"detail": "busy"}, status_code=503)
            return JSONResponse({"ok": True})

        @app.get("/stream")
        async def stream() -> StreamingResponse:
            async def chunks() -> AsyncIterator[bytes]:
                for index in range(5):
                    yield f"chunk {index}\n".encode()
                    await asyncio.sleep(0.05)

            return StreamingResponse(chunks(), media_type="text/plain")

        @app.get("/limited")
        async def limited() -> dict[str, bool]:
            return {"ok": True}

        @app.get("/public")
        async def public() -> dict[str, bool]:
            return {"public": True}

        @app.websocket("/ws/echo")
        async def ws_echo(websocket: WebSocket) -> None:
            await websocket.accept()
            authorization = websocket.headers.get("authorization", "")
            await websocket.send_text(f"hello {'with token' if authorization.startswith('Bearer ') else 'anonymous'}")
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") == "close, please":
                    await websocket.close(code=4000, reason="closed by the service")
                    return
                if message.get("text") is not None:
                    await websocket.send_text("echo:" + message["text"])
                elif message.get("bytes") is not None:
                    await websocket.send_bytes(message["bytes"])

        return app


def mint(key: RSAKey, *, issuer: str = ISSUER, audience: str = AUDIENCE, **claims: Any) -> str:
    """An RFC 9068 access token signed with the test key (scope ``org.read`` unless told)."""
    claims.setdefault("scopes", "org.read")
    return mint_access_token(key, issuer=issuer, audience=audience, **claims)
