"""The sample vendor app: one FastAPI application serving both of the vendor's demo apps (OIDC and LTI 1.3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from vendor_app import lti, oidc, pages, usage, webhooks
from vendor_app.config import Settings
from vendor_app.context import AppContext, context_of
from vendor_app.keys import load_or_create


def create_app(settings: Settings | None = None, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The app; ``transport`` carries its outbound calls (default: the network)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(transport=transport, timeout=settings.timeout_seconds) as http:
            app.state.context = AppContext(
                settings=settings, http=http, tool_key=load_or_create(settings.tool_key_file), transport=transport
            )
            yield

    app = FastAPI(
        title="示例第三方应用 Sample vendor app",
        description="Signs users in by OIDC and LTI 1.3, reads class rosters (NRPS), receives webhooks, counts usage.",
        version="0.1.0",
        lifespan=lifespan,
    )
    for module in (oidc, lti, webhooks, usage):
        app.include_router(module.router)

    @app.get("/", response_class=HTMLResponse, summary="What the app knows: configuration and latest webhooks")
    async def index(request: Request) -> HTMLResponse:
        context = context_of(request)
        received = [
            (item.received_at.strftime("%H:%M:%S"), item.event_type, item.message_id)
            for item in context.webhooks.latest
        ]
        return HTMLResponse(
            pages.page(
                "示例第三方应用",
                pages.paragraph("请从城市教育平台的应用列表打开本应用（OIDC 登录或 LTI 1.3 启动）。"),
                pages.definition_list(
                    [
                        ("平台地址", context.settings.platform_url),
                        ("OIDC 客户端", context.settings.oidc_client_id or "（未配置）"),
                        ("LTI 客户端", context.settings.lti_client_id or "（未配置）"),
                        ("回调签名密钥", "已配置" if context.settings.webhook_secrets else "（未配置）"),
                        ("计量上报", "已开启" if context.settings.metering_enabled else "未开启"),
                    ]
                ),
                pages.section(
                    "最近收到的回调事件（已验签、已去重）", pages.table(["时间", "事件", "投递编号"], received)
                ),
            )
        )

    @app.get("/privacy", response_class=HTMLResponse, summary="The privacy policy the manifests link to")
    async def privacy() -> HTMLResponse:
        return HTMLResponse(
            pages.page(
                "隐私政策（示例）",
                pages.paragraph("本应用只处理学校授权的数据：匿名用户标识、学校、角色，以及授权后的班级名单和姓名。"),
                pages.paragraph("不收集身份证号、手机号；学校卸载应用后，该校数据在清单声明的保留期（30 天）内删除。"),
            )
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
