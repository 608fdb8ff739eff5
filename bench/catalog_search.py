"""Catalog search benchmark: 2,000 listed apps on SQLite, 500+ mixed queries through the real app.

    .venv/bin/python bench/catalog_search.py [--apps 2000] [--queries 600] [--seed 7]
    .venv/bin/python bench/catalog_search.py --postgres postgresql://postgres@127.0.0.1:5432/test   # scratch database

Builds a fresh app store database (migrated as the service migrates it) and a test city, then publishes --apps apps
(default 2,000) from 40 vendors the way vendors and the city do it: each vendor registered, each app created with a
realistic Chinese manifest, its security self-assessment attached, submitted and approved by a city reviewer (the
service functions the routes call, so every catalog entry is written by the real publication path). Ratings are
then spread over the entries (1–5 stars, some apps unrated) so the rating filter and sort have something to do.

Queries run one at a time through the real FastAPI app over httpx's ASGI transport, each with a real signed token
(verified on every request) of a teacher: a reproducible mix of Chinese keyword searches (one or two words), keyword
+ filter combinations, filter-only browsing (category, grade band, subject, price unit, minimum rating), the three
sort orders and deeper pages. Side by side, the baseline: the same queries answered by a route added for this run
that does it the naive way — read every listed app with its published version and vendor, parse each manifest,
filter, rank and sort in Python, build the items — so the ratio shows what the denormalised ``catalog_entry``
table buys. Before timing, both answer every query and their totals are compared. Background workers (outbox
relay, consumers) are off: they have nothing to do with reads and would only add noise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Query
from sqlmodel import Session, col, select

from appstore.apps import service as apps
from appstore.apps.models import App, AppVersion
from appstore.catalog import service as catalog
from appstore.catalog.models import CatalogEntry
from appstore.catalog.router import require_browser
from appstore.config import AppStoreSettings
from appstore.deps import CallerDep
from appstore.main import create_app, migrate
from appstore.review import service as review
from appstore.review.schemas import Checklist, DecisionCreate
from appstore.testing import build_city
from appstore.vendors import service as vendors
from appstore.vendors.models import Vendor
from appstore.vendors.schemas import VendorCreate
from contracts.manifest import CATEGORY_LABELS, GRADE_BAND_LABELS, PRICING_UNIT_LABELS, SUBJECT_LABELS
from kit.db import ReadSessionDep
from kit.identifiers import credit_code_check_character
from kit.testing import TestIssuer, scratch_postgres_database

PDF = b"%PDF-1.7\n%bench\n%%EOF\n"
SUBJECT_WORDS = {
    "chinese": ["语文", "阅读", "作文", "古诗", "识字"], "mathematics": ["数学", "口算", "几何", "应用题", "思维"],
    "english": ["英语", "单词", "口语", "听力", "绘本"], "physics": ["物理", "力学", "电学", "实验"],
    "chemistry": ["化学", "元素", "实验"], "biology": ["生物", "植物", "细胞"], "history": ["历史", "朝代"],
    "geography": ["地理", "地图", "气候"], "music": ["音乐", "合唱", "乐理"], "art": ["美术", "书法", "绘画"],
    "physical_education": ["体育", "跳绳", "体能"], "information_technology": ["编程", "信息科技", "人工智能"],
    "psychology": ["心理", "情绪"], "labour": ["劳动", "手工"], "morality_law": ["道德", "法治"],
    "science": ["科学", "探究"], "general": ["综合", "素养"], "politics": ["思政", "时事"],
}  # fmt: skip
PREFIXES = ["智慧", "趣味", "快乐", "云上", "小小", "阳光", "启航", "星火", "乐学", "掌上", "AI", "互动", "精品"]
SUFFIXES = ["小达人", "课堂", "学堂", "乐园", "助手", "训练营", "宝典", "工坊", "实验室", "闯关", "打卡", "空间"]
PHRASES = [
    "根据学生水平自动推荐练习", "教师一键布置分层作业", "实时生成班级学情报告", "支持课堂限时挑战", "错题自动归档",
    "家长可查看孩子的练习进度", "内容经过学科教研员审核", "适合课后服务使用", "提供丰富的互动动画", "支持离线下载",
    "与教材章节同步", "AI 智能批改", "语音评测打分", "游戏化激励机制", "提供教师备课素材",
]  # fmt: skip
VENDOR_NAMES = ["启明", "博学", "知行", "同文", "育才", "星辰", "睿思", "明德", "乐知", "求真"]
VENDOR_KINDS = ["教育科技", "信息技术", "网络科技", "文化传播"]
SCOPE_PURPOSES = {
    "roster.read": "按班级布置练习，需要读取班级和任课教师",
    "roster.students.read": "为班级中的每位学生生成个人练习记录",
    "profile": "在界面上显示用户的姓名",
}


def credit_code(serial: int) -> str:
    first17 = f"91350200MA{serial:07d}"
    return first17 + credit_code_check_character(first17)


def manifest(rng: random.Random, index: int) -> tuple[dict[str, Any], list[str]]:
    subject = rng.choice(list(SUBJECT_WORDS))
    word = rng.choice(SUBJECT_WORDS[subject])
    name = f"{rng.choice(PREFIXES)}{word}{rng.choice(SUFFIXES)}"[:20] + f"{index}"
    bands = sorted(rng.sample(list(GRADE_BAND_LABELS), rng.randint(1, 3)))
    scopes = ["openid", *rng.sample(list(SCOPE_PURPOSES), rng.randint(0, 2))]
    unit = rng.choice(list(PRICING_UNIT_LABELS))
    pricing: dict[str, Any] = {"unit": unit, "unit_price_fen": rng.randint(0, 500)}
    if unit == "reported_unit":
        pricing["reported_unit_name"] = {"zh-CN": "一份批改的作业"}
    if rng.random() < 0.5:
        pricing["monthly_cap_fen_per_school"] = rng.randint(10_000, 1_000_000)
    description = (
        "，".join(rng.sample(PHRASES, 4))
        + f"。专注{SUBJECT_LABELS[subject]}学科，覆盖"
        + "、".join(GRADE_BAND_LABELS[band] for band in bands)
    )
    activity = rng.choice(["练习", "学习", "教学", "测评"])
    document = {
        "version": "1.0.0",
        "name": {"zh-CN": name},
        "summary": {"zh-CN": f"{SUBJECT_LABELS[subject]}{activity}：{word}{rng.choice(PHRASES)}"[:60]},
        "description": {"zh-CN": description},
        "category": rng.choice(list(CATEGORY_LABELS)),
        "grade_bands": bands,
        "subjects": [subject],
        "launch": {"type": "oidc", "initiate_login_uri": f"https://app{index}.example.cn/login",
                   "redirect_uris": [f"https://app{index}.example.cn/callback"]},
        "scopes": [{"scope": scope, "purpose": {"zh-CN": SCOPE_PURPOSES.get(scope, "识别登录的教师和学生身份")}}
                   for scope in scopes],
        "data_retention_days": rng.choice([0, 30, 90, 180]),
        "pricing": pricing,
        "privacy_policy_url": f"https://app{index}.example.cn/privacy",
        "support": {"email": f"support@app{index}.example.cn"},
    }  # fmt: skip
    return document, [word, name[:2]]


def seed(session: Session, *, count: int, developer_id: str, reviewer_id: str, rng: random.Random) -> list[str]:
    """Publish ``count`` apps through the service functions; the words their names use (for queries)."""
    vendor_ids = []
    for serial in range(40):
        name = f"厦门{VENDOR_NAMES[serial % 10]}{VENDOR_KINDS[serial % 4]}有限公司{serial}"
        vendor = vendors.register_vendor(
            session,
            data=VendorCreate(
                name=name, unified_social_credit_code=credit_code(serial + 1), contact_name="王经理",
                contact_email="bd@example.cn", contact_phone="13800138000", icp_filing="闽ICP备12345678号",
                education_app_filing="教APP备3502001号",
            ),
            registrant_id=developer_id,
        )  # fmt: skip
        vendor_ids.append(vendor.id)
    words: list[str] = []
    approve = DecisionCreate(
        decision="approved",
        checklist=Checklist(filings_valid=True, privacy_purposes_adequate=True, content_appropriate=True,
                            security_assessment_attached=True),
    )  # fmt: skip
    for index in range(count):
        document, used = manifest(rng, index)
        words.extend(used)
        app, version = apps.create_app(
            session, vendor_id=vendor_ids[index % len(vendor_ids)], document=document, created_by=developer_id,
            environment="test",
        )  # fmt: skip
        apps.attach_security_assessment(
            session, version=version, filename="report.pdf", content_type="application/pdf", content=PDF,
            uploaded_by=developer_id, max_bytes=1_000_000,
        )  # fmt: skip
        apps.submit(session, app=app, version=version, submitted_by=developer_id)
        review.decide(session, version=version, app=app, reviewer_id=reviewer_id, data=approve)
    for entry in session.exec(select(CatalogEntry)).all():
        if rng.random() < 0.8:
            entry.rating_count = rng.randint(1, 60)
            entry.rating_sum = sum(rng.randint(1, 5) for _ in range(entry.rating_count))
            entry.rating_average = entry.rating_sum / entry.rating_count
            session.add(entry)
    session.flush()
    return words


def query_mix(rng: random.Random, words: Sequence[str], count: int) -> list[dict[str, Any]]:
    """A reproducible mix of what school staff ask the catalog."""
    vocabulary = sorted(set(words) | {word for group in SUBJECT_WORDS.values() for word in group} | set(PHRASES[:5]))
    queries: list[dict[str, Any]] = []
    for _ in range(count):
        kind = rng.random()
        query: dict[str, Any] = {}
        if kind < 0.35:
            query["q"] = rng.choice(vocabulary)
        elif kind < 0.5:
            query["q"] = f"{rng.choice(vocabulary)} {rng.choice(vocabulary)}"
        elif kind < 0.75:
            query["q"] = rng.choice(vocabulary)
            query[rng.choice(["category", "grade_band", "subject", "pricing_unit"])] = None
        else:
            for key in rng.sample(
                ["category", "grade_band", "subject", "pricing_unit", "min_rating"], rng.randint(1, 3)
            ):
                query[key] = None
        for key in list(query):
            if query[key] is None:
                query[key] = {
                    "category": lambda: rng.choice(list(CATEGORY_LABELS)),
                    "grade_band": lambda: rng.choice(list(GRADE_BAND_LABELS)),
                    "subject": lambda: rng.choice(list(SUBJECT_WORDS)),
                    "pricing_unit": lambda: rng.choice(list(PRICING_UNIT_LABELS)),
                    "min_rating": lambda: rng.choice([2, 3, 3.5, 4]),
                }[key]()
        query["sort"] = (
            rng.choice(["relevance", "rating", "newest"]) if "q" in query else rng.choice(["rating", "newest"])
        )
        query["limit"] = rng.choice([10, 20, 20, 50])
        query["offset"] = rng.choice([0, 0, 0, query["limit"], 2 * query["limit"]])
        queries.append(query)
    return queries


def add_naive_route(app: FastAPI) -> None:
    """The baseline: everything read and parsed per request, filtered, ranked and sorted in Python."""

    def naive(
        caller: CallerDep, session: ReadSessionDep, q: Annotated[str | None, Query()] = None,
        category: str | None = None, grade_band: str | None = None, subject: str | None = None,
        pricing_unit: str | None = None, min_rating: float | None = None, sort: str | None = None,
        limit: int = 20, offset: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        require_browser(caller)
        rows = session.exec(
            select(App, AppVersion, Vendor)
            .join(AppVersion, col(AppVersion.id) == col(App.published_version_id))
            .join(Vendor, col(Vendor.id) == col(App.vendor_id))
            .where(App.status == "listed")
        ).all()
        ratings = {entry.app_id: entry for entry in session.exec(select(CatalogEntry)).all()}
        words = catalog.keywords(q)
        found = []
        for app_row, version, vendor in rows:
            manifest = apps.manifest_of(version)
            name = f"{manifest.name.zh_cn} {manifest.name.en or ''}".lower()
            summary = f"{manifest.summary.zh_cn} {manifest.summary.en or ''}".lower()
            body = f"{manifest.description.zh_cn} {manifest.description.en or ''} {vendor.name}".lower()
            if any(word not in name and word not in summary and word not in body for word in words):
                continue
            if category and manifest.category != category:
                continue
            if grade_band and grade_band not in manifest.grade_bands:
                continue
            if subject and subject not in manifest.subjects:
                continue
            if pricing_unit and manifest.pricing.unit != pricing_unit:
                continue
            entry = ratings[app_row.id]
            if min_rating is not None and (entry.rating_count == 0 or entry.rating_average < min_rating):
                continue
            score = sum(100 * (w in name) + 10 * (w in summary) + (w in body) for w in words)
            found.append((app_row, version, vendor, manifest, entry, score))
        order = sort or ("relevance" if words else "newest")
        found.sort(key=lambda row: row[0].id)
        found.sort(key=lambda row: row[1].published_at, reverse=True)
        if order in ("relevance", "rating"):
            found.sort(key=lambda row: (row[4].rating_average, row[4].rating_count), reverse=True)
        if order == "relevance":
            found.sort(key=lambda row: row[5], reverse=True)
        page = found[offset : offset + limit]
        items = []
        for app_row, version, vendor, manifest, entry, _ in page:
            card = catalog.listing_card(app_row, version, manifest, vendor)
            card["rating"] = catalog.rating_of(entry)
            items.append(card)
        return {"items": items, "total": len(found), "limit": limit, "offset": offset}

    app.add_api_route("/bench/naive-catalog", naive, methods=["GET"])


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def measure(client: httpx.AsyncClient, path: str, queries: list[dict[str, Any]],
                  headers: dict[str, str]) -> list[float]:  # fmt: skip
    timings = []
    for query in queries:
        started = time.perf_counter()
        response = await client.get(path, params=query, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (query, response.text)
    return timings


def describe(label: str, timings: list[float]) -> str:
    return (
        f"{label:<34} p50 {percentile(timings, 0.5):7.2f} ms   p95 {percentile(timings, 0.95):7.2f} ms   "
        f"p99 {percentile(timings, 0.99):7.2f} ms   max {max(timings):7.2f} ms   "
        f"mean {statistics.fmean(timings):7.2f} ms"
    )


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory())
        if args.postgres:
            database_url = stack.enter_context(scratch_postgres_database(args.postgres, prefix="catalog_bench"))
        else:
            database_url = f"sqlite:///{Path(workdir) / 'appstore.db'}"
        settings = AppStoreSettings(
            environment="test", database_url=database_url, run_background_workers=False, log_json=False,
            log_level="WARNING",
        )  # fmt: skip
        migrate(settings)
        issuer = TestIssuer()
        app = create_app(settings)
        issuer.trust(app)
        add_naive_route(app)
        async with app.router.lifespan_context(app):
            city = build_city(app.state.database, issuer)
            started = time.perf_counter()
            with app.state.database.session() as session:
                words = seed(session, count=args.apps, developer_id=city.people["developer"].id,
                             reviewer_id=city.people["city_admin"].id, rng=rng)  # fmt: skip
            print(f"seeded {args.apps} listed apps from 40 vendors in {time.perf_counter() - started:.1f} s "
                  f"({app.state.database.dialect})")  # fmt: skip
            queries = query_mix(rng, words, args.queries)
            headers = city.token("a1_teacher", "apps.read")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://appstore.bench") as client:
                mismatches = 0
                for query in queries:
                    ours = (await client.get("/catalog/apps", params=query, headers=headers)).json()
                    naive = (await client.get("/bench/naive-catalog", params=query, headers=headers)).json()
                    same_page = [i["app_id"] for i in ours["items"]] == [i["app_id"] for i in naive["items"]]
                    if ours["total"] != naive["total"] or not same_page:
                        mismatches += 1
                matched = sum(1 for query in queries if "q" in query)
                print(f"{len(queries)} queries ({matched} with keywords); totals and pages agree with the baseline on "
                      f"{len(queries) - mismatches}/{len(queries)}")  # fmt: skip
                await measure(client, "/catalog/apps", queries[:50], headers)  # warm-up
                await measure(client, "/bench/naive-catalog", queries[:20], headers)
                ours_timings = await measure(client, "/catalog/apps", queries, headers)
                naive_timings = await measure(client, "/bench/naive-catalog", queries, headers)
            print(describe("catalog_entry search (the service)", ours_timings))
            print(describe("baseline: read all, filter in Python", naive_timings))
            print(f"ratio baseline/service: p50 x{percentile(naive_timings, .5) / percentile(ours_timings, .5):.1f}, "
                  f"p99 x{percentile(naive_timings, .99) / percentile(ours_timings, .99):.1f}")  # fmt: skip
            target = percentile(ours_timings, 0.99) < 50
            print(f"target p99 < 50 ms with {args.apps} apps: {'met' if target else 'NOT met'}")
            sample = json.dumps(queries[:3], ensure_ascii=False)
            print(f"first queries: {sample}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", default=None, help="Admin URL of a PostgreSQL server: run on a scratch database "
                        "there (default: a fresh SQLite file in a temporary directory)")  # fmt: skip
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
