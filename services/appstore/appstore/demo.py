"""Demo data for `make run`: a vendor with the sample app (OIDC and LTI 1.3) approved and installed at a school,
and a catalog of realistic apps from a few more vendors, so the whole chain can be clicked through.

Loaded once, after identity's demo city has reached the app store's directory projection. Every record goes
through the same service functions as the API (registration, manifest checks, submission, review, installation
with the app's OAuth client at identity), so the demo also publishes the events a real set-up would.

The sample app's two manifests are the files in ``examples/vendor-app``; their client ids are fixed so the
sample app's settings stay the same across runs. Each run hands out fresh client secrets and the webhook
secrets as ``VENDOR_APP_*`` variables, for `make run` to start the sample app with.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from appstore.apps import service as apps
from appstore.apps.models import App
from appstore.config import AppStoreSettings
from appstore.deps import Caller
from appstore.identity_client import IdentityClient
from appstore.installations import service as installations
from appstore.installations.models import Installation
from appstore.review import service as review
from appstore.review.schemas import Checklist, DecisionCreate
from appstore.roster.models import RosterOrganisation, RosterPerson
from appstore.vendors import service as vendors
from appstore.vendors.models import Vendor, VendorMember
from appstore.vendors.schemas import VendorCreate
from appstore.webhooks import service as webhooks
from contracts.auth import AccessTokenClaims, RoleClaim
from kit.auth import Principal
from kit.crypto import FieldCipher
from kit.db import Database
from kit.identifiers import credit_code_check_character

#: Where the sample vendor app's manifests live (the repository's examples folder).
SAMPLE_APP_DIR = Path(__file__).resolve().parents[3] / "examples" / "vendor-app"
SAMPLE_MANIFESTS = {"lti": "manifest-lti.json", "oidc": "manifest-oidc.json"}
SAMPLE_CLIENT_IDS = {"lti": "demo-homework-helper", "oidc": "demo-reading-log"}

#: People of identity's demo city (services/identity/identity/demo.py), found in the directory projection by name.
DEMO_REVIEWER_NAME = "陈建国"  # city.admin, city_admin: reviews apps
DEMO_DEVELOPER_NAME = "林思远"  # vendor.dev, vendor_developer at the city: the sample vendor's owner
DEMO_SCHOOL_NAME = "厦门市思明区滨海实验小学"
LOADER_ID = "appstore-demo-loader"

# A one-page PDF standing in for each version's security self-assessment (安全自评估报告).
SECURITY_ASSESSMENT_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
APPROVED = DecisionCreate(
    decision="approved",
    checklist=Checklist(
        filings_valid=True, privacy_purposes_adequate=True, content_appropriate=True, security_assessment_attached=True
    ),
    reasons=["演示数据：材料齐全，准予上架"],
)


def credit_code(first17: str) -> str:
    """A unified social credit code with its GB 32100-2015 check character."""
    return first17 + credit_code_check_character(first17)


SAMPLE_VENDOR = VendorCreate(
    name="厦门鹭岛智学教育科技有限公司",
    unified_social_credit_code=credit_code("91350203MA8RXK2P3"),
    contact_name=DEMO_DEVELOPER_NAME,
    contact_email="dev@ludao-edu.example",
    contact_phone="0592-5550100",
    icp_filing="闽ICP备20260101号",
    education_app_filing="教APP备3502001号",
)
CATALOG_VENDORS = {
    "zhixue": VendorCreate(
        name="杭州知学云教育科技有限公司", unified_social_credit_code=credit_code("91330106MA2H4K7L8"),
        contact_name="周明轩", contact_email="partner@zhixueyun.example", contact_phone="0571-8650123",
        icp_filing="浙ICP备19088123号", education_app_filing="教APP备3301002号",
    ),
    "tongqu": VendorCreate(
        name="北京童趣未来科技有限公司", unified_social_credit_code=credit_code("91110108MA01C3D5E"),
        contact_name="王佳怡", contact_email="edu@tongqu.example", contact_phone="010-62881234",
        icp_filing="京ICP备18012345号-2", education_app_filing="教APP备1101003号",
    ),
    "minjiang": VendorCreate(
        name="福州闽江数字教育有限公司", unified_social_credit_code=credit_code("91350102MA2Y8N6Q1"),
        contact_name="陈立群", contact_email="service@minjiang-edu.example", contact_phone="0591-87661234",
        icp_filing="闽ICP备17023456号", education_app_filing="教APP备3501004号",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class CatalogApp:
    """One of the demo catalog's apps, turned into a manifest by :func:`catalog_manifest`."""

    vendor: str
    slug: str
    name: tuple[str, str]
    summary: tuple[str, str]
    description: str
    category: str
    grade_bands: tuple[str, ...]
    subjects: tuple[str, ...]
    scopes: tuple[tuple[str, str], ...]
    pricing: dict[str, Any]
    retention_days: int = 30


CATALOG: tuple[CatalogApp, ...] = (
    CatalogApp(
        "zhixue", "kousuan", ("口算天天练", "Daily Mental Arithmetic"),
        ("每天五分钟口算，自动批改、错题重练", "Five minutes of mental arithmetic a day, auto-marked"),
        "按教材单元生成口算题，学生限时作答，系统自动批改并把错题加入重练；老师可查看全班正确率变化。",
        "homework", ("primary_lower", "primary_upper"), ("mathematics",),
        (("openid", "识别学生和老师，记录各自的练习"), ("roster.read", "按班级布置口算练习并汇总正确率")),
        {"unit": "monthly_active_user", "unit_price_fen": 50, "monthly_cap_fen_per_school": 60000},
    ),
    CatalogApp(
        "tongqu", "huiben", ("英语绘本屋", "English Picture Books"),
        ("分级英语绘本，原声跟读与配音", "Levelled English picture books with read-along"),
        "收录 600 余本分级英语绘本，提供原声朗读、逐句跟读评分和趣味配音，适合小学低段课堂与课后阅读。",
        "learning", ("primary_lower", "primary_upper"), ("english",),
        (("openid", "识别学生，保存阅读进度和跟读记录"),),
        {"unit": "minute", "unit_price_fen": 1, "monthly_cap_fen_per_school": 40000},
    ),
    CatalogApp(
        "zhixue", "hudong", ("课堂互动答题器", "Classroom Clicker"),
        ("课堂即时投票、抢答与随堂小测", "Live polls, buzzers and quick quizzes in class"),
        "老师在课堂上发起选择题、投票和抢答，学生用平板作答，结果实时投屏，帮助老师掌握全班理解情况。",
        "classroom", ("primary_upper", "junior", "senior"), ("general",),
        (("openid", "识别发起互动的老师和作答的学生"), ("roster.read", "按班级组织课堂互动和统计作答")),
        {"unit": "launch", "unit_price_fen": 5, "monthly_cap_fen_per_school": 30000},
    ),
    CatalogApp(
        "minjiang", "ceping", ("单元测评中心", "Unit Assessment Centre"),
        ("单元测验组卷、阅卷与学情分析", "Unit tests: papers, marking and learning analytics"),
        "按课程标准和教材单元组卷，支持在线作答与扫描阅卷，生成班级和个人学情报告，帮助精准教学。",
        "assessment", ("junior", "senior"), ("mathematics", "physics", "chemistry"),
        (("openid", "识别参加测评的学生和组织测评的老师"), ("roster.read", "按班级发布测评并生成班级学情报告"),
         ("roster.students.read", "把每位学生的答卷与成绩对应到本人")),
        {"unit": "reported_unit", "unit_price_fen": 30, "monthly_cap_fen_per_school": 80000,
         "reported_unit_name": {"zh-CN": "一份完成阅卷的答卷", "en": "one answer sheet marked"}},
    ),
    CatalogApp(
        "minjiang", "jiaxiao", ("家校通知本", "Home-School Notices"),
        ("通知、回执与请假，一个入口", "Notices, acknowledgements and leave requests"),
        "学校和班主任发布通知，家长一键回执；家长在线提交请假，班主任审批后自动同步到班级考勤。",
        "home_school", ("primary_lower", "primary_upper", "junior"), ("general",),
        (("openid", "识别老师和家长，发送和确认通知"), ("profile", "在通知回执中显示家长和老师的姓名"),
         ("guardian.read", "把通知发给学生的监护人并收取回执")),
        {"unit": "monthly_active_user", "unit_price_fen": 20, "monthly_cap_fen_per_school": 20000},
    ),
    CatalogApp(
        "tongqu", "tiyu", ("阳光体育打卡", "Sunshine PE Log"),
        ("课外体育锻炼打卡与体质数据趋势", "After-school exercise log and fitness trends"),
        "学生记录每日课外锻炼，体育老师布置跳绳、跑步等项目并查看完成情况，配合体质健康测试数据看趋势。",
        "quality_education", ("primary_upper", "junior"), ("physical_education",),
        (("openid", "识别学生，记录各自的锻炼打卡"), ("roster.read", "体育老师按班级查看锻炼完成情况")),
        {"unit": "monthly_active_user", "unit_price_fen": 30, "monthly_cap_fen_per_school": 30000},
    ),
    CatalogApp(
        "zhixue", "shiyan", ("虚拟仿真实验室", "Virtual Science Lab"),
        ("初高中理化生虚拟实验，安全可重复", "Virtual physics, chemistry and biology experiments"),
        "覆盖初高中课标要求的 200 余个理化生实验，3D 仿真操作，适合实验前预习和实验室条件不足时的教学。",
        "teaching", ("junior", "senior"), ("physics", "chemistry", "biology"),
        (("openid", "识别做实验的学生和布置实验的老师"), ("roster.read", "老师按班级布置实验任务并查看完成情况")),
        {"unit": "minute", "unit_price_fen": 2, "monthly_cap_fen_per_school": 100000},
    ),
    CatalogApp(
        "minjiang", "gushi", ("古诗文诵读", "Classical Poetry Recital"),
        ("课标古诗文朗读、背诵与闯关", "Recite the curriculum's classical poems"),
        "收录课标要求的全部古诗文，名家示范朗读，学生录音背诵、智能评分，以闯关方式巩固积累。",
        "learning", ("primary_upper", "junior"), ("chinese",),
        (("openid", "识别学生，保存背诵进度和闯关记录"),),
        {"unit": "monthly_active_user", "unit_price_fen": 40, "monthly_cap_fen_per_school": 40000},
    ),
    CatalogApp(
        "tongqu", "biancheng", ("编程启蒙营", "Coding Camp"),
        ("图形化编程入门到 Python 基础", "From block coding to first steps in Python"),
        "按信息科技课程标准设计的编程课程，从图形化编程到 Python 基础，作品自动评测，老师可查看班级进度。",
        "teaching", ("primary_upper", "junior"), ("information_technology",),
        (("openid", "识别学生，保存作品和学习进度"), ("roster.read", "老师按班级查看编程课程进度")),
        {"unit": "launch", "unit_price_fen": 10, "monthly_cap_fen_per_school": 50000},
    ),
    CatalogApp(
        "zhixue", "xinli", ("心理健康自助站", "Wellbeing Corner"),
        ("情绪记录、心理科普与预约咨询", "Mood diary, wellbeing lessons and counselling appointments"),
        "学生匿名记录情绪、学习心理健康微课，需要时预约学校心理老师；应用不向老师展示学生的情绪记录。",
        "quality_education", ("junior", "senior"), ("psychology",),
        (("openid", "仅用于识别学生本人，情绪记录不与姓名关联"),),
        {"unit": "monthly_active_user", "unit_price_fen": 60, "monthly_cap_fen_per_school": 50000},
        retention_days=7,
    ),
    CatalogApp(
        "minjiang", "paike", ("智能排课助手", "Timetabling Assistant"),
        ("按课程方案与师资自动排课、调课", "Timetables from the curriculum plan and staffing"),
        "根据课程方案、教师任课和场地约束自动生成全校课表，支持调课代课和走班排课，结果可导出。",
        "management", ("primary_lower", "primary_upper", "junior", "senior"), ("general",),
        (("openid", "识别使用排课功能的教务人员"), ("org.read", "读取学校信息以套用本校作息和场地"),
         ("roster.read", "读取班级和教师任课安排用于排课")),
        {"unit": "api_call", "unit_price_fen": 1, "monthly_cap_fen_per_school": 20000},
    ),
)  # fmt: skip


def catalog_manifest(app: CatalogApp) -> dict[str, Any]:
    """The manifest of a demo catalog app: an OIDC app on its vendor's (reserved, never resolving) domain."""
    base = f"https://{app.slug}.{app.vendor}.example"
    return {
        "manifest_version": 1,
        "version": "1.0.0",
        "name": {"zh-CN": app.name[0], "en": app.name[1]},
        "summary": {"zh-CN": app.summary[0], "en": app.summary[1]},
        "description": {"zh-CN": app.description},
        "category": app.category,
        "grade_bands": list(app.grade_bands),
        "subjects": list(app.subjects),
        "icon_url": f"{base}/icon.png",
        "screenshots": [f"{base}/screenshots/1.png", f"{base}/screenshots/2.png"],
        "launch": {"type": "oidc", "initiate_login_uri": f"{base}/login", "redirect_uris": [f"{base}/callback"]},
        "webhook": {"url": f"{base}/webhooks", "events": ["installation.created", "installation.removed"]},
        "scopes": [{"scope": scope, "purpose": {"zh-CN": purpose}} for scope, purpose in app.scopes],
        "data_retention_days": app.retention_days,
        "pricing": app.pricing,
        "privacy_policy_url": f"{base}/privacy",
        "support": {"email": f"support@{app.vendor}.example"},
    }


def sample_manifest(kind: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SAMPLE_APP_DIR / SAMPLE_MANIFESTS[kind]).read_text(encoding="utf-8"))
    return document


@dataclass
class DemoResult:
    """What the demo loaded (or found), and the sample app's settings."""

    loaded: bool
    vendor_id: str
    school_id: str | None
    listed_apps: int
    developer_found: bool
    sample_apps: dict[str, dict[str, str]] = field(default_factory=dict)
    vendor_app_env: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded, "vendor_id": self.vendor_id, "school_id": self.school_id,
            "listed_apps": self.listed_apps, "developer_found": self.developer_found, "sample_apps": self.sample_apps,
            "vendor_app_env": self.vendor_app_env,
        }  # fmt: skip


class DemoNotAllowed(RuntimeError):
    """Demo data (fixed ids, secrets printed) belongs on a developer's machine only."""


def loader_caller(city: RosterOrganisation) -> Caller:
    """The demo loader acts as a city administrator (an operator's command, not a request)."""
    now = int(time.time())
    claims = AccessTokenClaims(
        iss="appstore-cli", sub=LOADER_ID, aud="edu-platform", exp=now + 300, iat=now, jti=uuid.uuid4().hex,
        client_id="appstore-cli", scope="apps.read apps.install apps.develop apps.review",
        roles=[RoleClaim(role="city_admin", org_id=city.id, org_path=city.path)],
    )  # fmt: skip
    return Caller(principal=Principal.from_claims(claims), source_ip=None, request_id=None)


def _person_named(session: Session, name: str, org_id: str) -> RosterPerson | None:
    return session.exec(
        select(RosterPerson).where(
            RosterPerson.name == name, RosterPerson.org_id == org_id, col(RosterPerson.active).is_(True)
        )
    ).first()


def _directory(session: Session, school_name: str) -> tuple[RosterOrganisation, RosterOrganisation] | None:
    """The city and the demo school, once the projection has them."""
    city = session.exec(select(RosterOrganisation).where(RosterOrganisation.kind == "city")).first()
    schools = session.exec(
        select(RosterOrganisation)
        .where(RosterOrganisation.kind == "school", col(RosterOrganisation.active).is_(True))
        .order_by(col(RosterOrganisation.path))
    ).all()
    if city is None or not schools:
        return None
    school = next((row for row in schools if row.name == school_name), schools[0])
    return city, school


def _publish(
    session: Session, settings: AppStoreSettings, *, vendor: Vendor, document: dict[str, Any], developer_id: str,
    reviewer_id: str, client_id: str | None = None,
) -> App:  # fmt: skip
    """Create, submit and approve one app the way a vendor and a reviewer would."""
    app, version = apps.create_app(
        session, vendor_id=vendor.id, document=document, created_by=developer_id, environment=settings.environment,
        resolve_hosts=False,
    )  # fmt: skip
    if client_id is not None:
        app.client_id = client_id  # stable, so the sample app's configuration survives a reset of the demo
        session.add(app)
        session.flush()
    apps.attach_security_assessment(
        session, version=version, filename="安全自评估报告.pdf", content_type="application/pdf",
        content=SECURITY_ASSESSMENT_PDF, uploaded_by=developer_id, max_bytes=settings.attachment_max_bytes,
    )  # fmt: skip
    apps.submit(session, app=app, version=version, submitted_by=developer_id)
    review.decide(session, version=version, app=app, reviewer_id=reviewer_id, data=APPROVED)
    return app


def _create(
    session: Session, settings: AppStoreSettings, identity: IdentityClient | None, city: RosterOrganisation,
    school: RosterOrganisation, *, developer_name: str, reviewer_name: str,
) -> DemoResult:  # fmt: skip
    developer = _person_named(session, developer_name, city.id)
    reviewer = _person_named(session, reviewer_name, city.id)
    developer_id = developer.id if developer else LOADER_ID
    reviewer_id = reviewer.id if reviewer else LOADER_ID
    sample_vendor = vendors.register_vendor(session, data=SAMPLE_VENDOR, registrant_id=developer_id)
    sample_apps = {
        kind: _publish(
            session, settings, vendor=sample_vendor, document=sample_manifest(kind), developer_id=developer_id,
            reviewer_id=reviewer_id, client_id=SAMPLE_CLIENT_IDS[kind],
        )
        for kind in SAMPLE_MANIFESTS
    }  # fmt: skip
    others = {
        key: vendors.register_vendor(session, data=data, registrant_id=f"demo-owner-{key}")
        for key, data in CATALOG_VENDORS.items()
    }
    for entry in CATALOG:
        _publish(
            session, settings, vendor=others[entry.vendor], document=catalog_manifest(entry),
            developer_id=f"demo-owner-{entry.vendor}", reviewer_id=reviewer_id,
        )  # fmt: skip
    if identity is not None:
        caller = loader_caller(city)
        for app in sample_apps.values():
            installations.install(
                session, identity, caller, school=school, app=app, scopes=None, grades=[], class_ids=[]
            )
    return DemoResult(
        loaded=True, vendor_id=sample_vendor.id, school_id=school.id, listed_apps=len(sample_apps) + len(CATALOG),
        developer_found=developer is not None,
    )  # fmt: skip


def _credentials(
    session: Session, settings: AppStoreSettings, identity: IdentityClient | None, cipher: FieldCipher,
    result: DemoResult,
) -> None:  # fmt: skip
    """Fresh client secrets and the webhook secrets of the sample apps, as the sample app's environment."""
    env = {
        "VENDOR_APP_PLATFORM_URL": settings.platform_base_url,
        "VENDOR_APP_OIDC_CLIENT_ID": SAMPLE_CLIENT_IDS["oidc"],
        "VENDOR_APP_LTI_CLIENT_ID": SAMPLE_CLIENT_IDS["lti"],
    }
    webhook_secrets: list[str] = []
    for kind, client_id in SAMPLE_CLIENT_IDS.items():
        app = session.exec(select(App).where(App.client_id == client_id)).one()
        installation = session.exec(
            select(Installation).where(Installation.app_id == app.id, Installation.status == "active")
        ).first()
        secret = ""
        if identity is not None:
            identity.ensure_client(app, apps.manifest_of(apps.get_version(session, app, str(app.published_version_id))))
            secret = identity.rotate_secret(client_id)
        webhook_secret = webhooks.signing_secrets(session, cipher, app.id)[0]
        webhook_secrets.append(webhook_secret)
        result.sample_apps[kind] = {
            "app_id": app.id, "client_id": client_id, "client_secret": secret, "webhook_secret": webhook_secret,
            "installation_id": installation.id if installation else "",
        }  # fmt: skip
    env["VENDOR_APP_OIDC_CLIENT_SECRET"] = result.sample_apps["oidc"]["client_secret"]
    # The LTI app's own client reports usage (client credentials, scope metering.report).
    env["VENDOR_APP_METERING_CLIENT_ID"] = SAMPLE_CLIENT_IDS["lti"]
    env["VENDOR_APP_METERING_CLIENT_SECRET"] = result.sample_apps["lti"]["client_secret"]
    env["VENDOR_APP_WEBHOOK_SECRET"] = " ".join(webhook_secrets)
    result.vendor_app_env = env


def load(
    database: Database,
    settings: AppStoreSettings,
    cipher: FieldCipher,
    identity: IdentityClient | None,
    *,
    wait_seconds: float = 60.0,
    developer_name: str = DEMO_DEVELOPER_NAME,
    reviewer_name: str = DEMO_REVIEWER_NAME,
    school_name: str = DEMO_SCHOOL_NAME,
) -> DemoResult:
    """Load the demo once (waiting for the directory); on later runs only hand out fresh sample-app credentials.

    ``identity`` registers the installed apps' OAuth clients and issues their secrets; without it (no identity
    running) the apps are listed but not installed.
    """
    if settings.environment not in ("local", "test"):
        raise DemoNotAllowed(f"demo data is for local development only, not environment={settings.environment}")
    deadline = time.monotonic() + wait_seconds
    while True:
        with database.session() as session:
            existing = session.exec(
                select(Vendor).where(Vendor.unified_social_credit_code == SAMPLE_VENDOR.unified_social_credit_code)
            ).first()
            if existing is not None:
                owners = session.exec(select(VendorMember.person_id).where(VendorMember.vendor_id == existing.id)).all()
                result = DemoResult(
                    loaded=False, vendor_id=existing.id, school_id=None,
                    listed_apps=len(session.exec(select(App.id).where(App.status == "listed")).all()),
                    developer_found=any(owner != LOADER_ID for owner in owners),
                )  # fmt: skip
                _credentials(session, settings, identity, cipher, result)
                return result
            found = _directory(session, school_name)
            if found is not None:
                city, school = found
                result = _create(
                    session, settings, identity, city, school, developer_name=developer_name,
                    reviewer_name=reviewer_name,
                )  # fmt: skip
                _credentials(session, settings, identity, cipher, result)
                return result
        if time.monotonic() > deadline:
            raise TimeoutError("the directory has no city with a school yet (is identity running with its demo?)")
        time.sleep(0.5)
