"""Page language (Simplified Chinese first, English) and the pages' messages in both.

The language is ``?lang=`` when given (it is then remembered in the ``lang`` cookie), else the
cookie, else the browser's Accept-Language, else Simplified Chinese.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Request

from kit.errors import preferred_language

LANG_COOKIE = "lang"
LANGUAGES = ("zh", "en")
HTML_LANG = {"zh": "zh-CN", "en": "en"}
# China has one time zone and no daylight saving time; times on the pages are Beijing time.
BEIJING = timezone(timedelta(hours=8), "CST")


def parse_language(value: str | None) -> str | None:
    """``zh`` / ``en`` for a tag such as ``zh-CN``, ``zh-Hans``, ``en-GB``; None for anything else."""
    tag = (value or "").strip().lower()
    if tag.startswith("zh"):
        return "zh"
    if tag.startswith("en"):
        return "en"
    return None


def requested_language(request: Request) -> str | None:
    """The language asked for in this request's query string, if any."""
    return parse_language(request.query_params.get("lang"))


def language_of(request: Request) -> str:
    return (
        requested_language(request)
        or parse_language(request.cookies.get(LANG_COOKIE))
        or preferred_language(request.headers.get("accept-language"))
    )


def switch_url(request: Request, language: str) -> str:
    """This page's relative URL in ``language`` (other query parameters, such as ``next``, kept)."""
    url = request.url.include_query_params(lang=language)
    return f"{url.path}?{url.query}"


def local_time(moment: datetime, language: str) -> str:
    local = moment.astimezone(BEIJING)
    return f"{local:%Y-%m-%d %H:%M}" + ("（北京时间）" if language == "zh" else " (Beijing time)")


class PageError(Exception):
    """A failure shown as a whole page (403 for a bad form token, 429 when throttled), in the page's language."""

    def __init__(
        self, status_code: int, title: str, body: str, *, headers: dict[str, str] | None = None, **params: Any
    ) -> None:
        super().__init__(title)
        self.status_code = status_code
        self.title = title  # message keys
        self.body = body
        self.headers = headers or {}
        self.params = params


MESSAGES: dict[str, tuple[str, str]] = {
    "lang.switch": ("English", "简体中文"),
    "lang.switch_label": ("Switch to English", "切换到简体中文"),
    "nav.skip": ("跳到主要内容", "Skip to main content"),
    "footer.security": (
        "请勿向任何人透露您的密码和验证码，工作人员不会索要。",
        "Never share your password or codes with anyone; staff will never ask for them.",
    ),
    # login
    "login.title": ("登录", "Sign in"),
    "login.heading": ("登录{platform}", "Sign in to {platform}"),
    "login.username": ("登录名", "Username"),
    "login.username_hint": (
        "教职工登录名、手机号或学籍号",
        "Staff username, mobile number or student number",
    ),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Sign in"),
    "login.blank": ("请输入登录名和密码。", "Enter your username and password."),
    "login.invalid": (
        "登录名或密码不正确。请检查后重试；连续多次失败，账号将被暂时锁定。",
        "The username or password is incorrect. Check them and try again; "
        "after repeated failures the account is locked for a while.",
    ),
    "login.locked": (
        "失败次数过多，账号已暂时锁定，期间即使密码正确也无法登录。请于 {until} 之后再试。",
        "Too many failed attempts: the account is locked for now and even the right password is refused. "
        "Try again after {until}.",
    ),
    "login.disabled": (
        "该账号已停用，无法登录。如有疑问，请联系您所在学校或区教育局的管理员。",
        "This account has been deactivated and cannot sign in. Contact your school's or district's administrator.",
    ),
    "login.expired": ("登录已超时，请重新登录。", "Your session has timed out; please sign in again."),
    "login.logged_out": ("您已安全退出。", "You have signed out."),
    "login.forgot": (
        "忘记密码？请联系学校管理员重置。",
        "Forgot your password? Ask your school's administrator to reset it.",
    ),
    # second factor at login
    "mfa.title": ("两步验证", "Two-step verification"),
    "mfa.intro": (
        "请打开手机上的身份验证器应用，输入“{platform}”当前显示的 6 位验证码。",
        "Open the authenticator app on your phone and enter the 6-digit code it shows for “{platform}”.",
    ),
    "mfa.code": ("6 位验证码", "6-digit code"),
    "mfa.submit": ("验证", "Verify"),
    "mfa.invalid": (
        "验证码不正确。请输入身份验证器当前显示的 6 位数字，并确认手机时间准确。",
        "That code is not right. Enter the 6 digits your authenticator shows now, and check your phone's clock.",
    ),
    "mfa.replayed": (
        "该验证码已经用过，请等待应用显示下一个验证码后再输入。",
        "That code has already been used; wait for the next one in your app.",
    ),
    "mfa.other_account": ("换一个账号登录", "Sign in with another account"),
    # second factor enrolment
    "setup.title": ("设置两步验证", "Set up two-step verification"),
    "setup.required": (
        "管理员和审计员账号必须启用两步验证：登录时除密码外，还需输入手机应用生成的验证码。",
        "Administrator and auditor accounts must use two-step verification: besides the password, "
        "signing in takes a code from an app on your phone.",
    ),
    "setup.optional": (
        "启用后，登录时除密码外还需输入手机应用生成的验证码。",
        "Once set up, signing in takes a code from an app on your phone besides the password.",
    ),
    "setup.step1": (
        "在手机上安装身份验证器应用，例如 Microsoft Authenticator、Google 身份验证器或 FreeOTP。",
        "Install an authenticator app on your phone, such as Microsoft Authenticator, Google Authenticator or FreeOTP.",
    ),
    "setup.step2": ("用应用扫描下面的二维码。", "Scan the QR code below with the app."),
    "setup.qr_alt": (
        "两步验证二维码；无法扫描时请手动输入下方密钥",
        "QR code for two-step verification; if you cannot scan it, type the key below",
    ),
    "setup.manual": (
        "无法扫描？请在应用中手动添加账号并输入密钥：",
        "Cannot scan? Add the account by hand with this key:",
    ),
    "setup.secret": ("密钥", "Key"),
    "setup.account": ("账号", "Account"),
    "setup.step3": ("输入应用显示的 6 位验证码，完成设置。", "Enter the 6-digit code the app shows to finish."),
    "setup.submit": ("完成设置", "Finish set-up"),
    "setup.invalid": (
        "验证码不正确。请确认扫描的是本页的二维码、手机时间准确，然后输入当前显示的 6 位数字。",
        "That code is not right. Make sure you scanned this page's QR code and your phone's clock is correct, "
        "then enter the 6 digits shown now.",
    ),
    # password change
    "password.title": ("修改密码", "Change password"),
    "password.forced": (
        "这是您第一次登录，请把管理员发放的初始密码改为只有您自己知道的新密码。",
        "This is your first sign-in: replace the initial password from your administrator with one only you know.",
    ),
    "password.current": ("当前密码", "Current password"),
    "password.new": ("新密码", "New password"),
    "password.confirm": ("再次输入新密码", "New password again"),
    "password.rules": (
        "至少 8 个字符；包含小写字母、大写字母、数字、符号中的至少三类；不能包含登录名；不能是常见密码。",
        "At least 8 characters; at least three of lower-case letters, upper-case letters, digits and symbols; "
        "not containing your username; not a common password.",
    ),
    "password.submit": ("修改密码", "Change password"),
    "password.blank": ("请填写全部三个密码框。", "Fill in all three password fields."),
    "password.wrong_current": ("当前密码不正确。", "The current password is incorrect."),
    "password.mismatch": (
        "两次输入的新密码不一致，请重新输入。",
        "The two new passwords do not match; type them again.",
    ),
    "password.problems": ("新密码不符合要求：", "The new password does not meet the rules:"),
    "password.changed": (
        "密码已修改。其他设备上的登录已全部退出。",
        "Password changed. You have been signed out everywhere else.",
    ),
    # account
    "account.title": ("我的账号", "My account"),
    "account.name": ("姓名", "Name"),
    "account.username": ("登录名", "Username"),
    "account.organisation": ("所属机构", "Organisation"),
    "account.roles": ("角色", "Roles"),
    "account.no_roles": ("无", "None"),
    "account.role_at": ("{role}（{org}）", "{role} ({org})"),
    "account.mfa": ("两步验证", "Two-step verification"),
    "account.mfa_on": ("已启用", "On"),
    "account.mfa_off": ("未启用", "Off"),
    "account.signed_in_at": ("本次登录时间", "Signed in at"),
    "account.change_password": ("修改密码", "Change password"),
    "account.setup_mfa": ("启用两步验证", "Set up two-step verification"),
    "account.apps": ("我的应用授权", "My app authorisations"),
    "account.logout": ("退出登录", "Sign out"),
    # continuing to where the login was for
    "continue.title": ("正在跳转", "Continuing"),
    "continue.body": (
        "登录成功，正在返回应用。如果页面没有自动跳转，请点击：",
        "Signed in. If you are not taken back automatically:",
    ),
    "continue.link": ("继续", "Continue"),
    # whole-page errors
    "error.csrf.title": ("页面已过期", "This page has expired"),
    "error.csrf.body": (
        "表单校验失败：页面可能打开太久，或者您在其他窗口登录或退出过。请刷新页面后重新提交。",
        "The form could not be verified: the page may have been open too long, or you signed in or out in "
        "another window. Reload the page and submit it again.",
    ),
    "error.throttle.title": ("尝试过于频繁", "Too many attempts"),
    "error.throttle.body": (
        "来自您所在网络地址的失败登录次数过多，请在 {minutes} 分钟后再试。",
        "There have been too many failed sign-ins from your network address. Try again in {minutes} minutes.",
    ),
    "error.too_large.title": ("提交的内容过大", "Too much data"),
    "error.too_large.body": (
        "表单内容超出长度限制，请检查后重试。",
        "The form is larger than allowed; check it and try again.",
    ),
    "error.back": ("返回登录页", "Back to sign-in"),
    "error.request_id": ("请求编号", "Request ID"),
    # role names
    "role.city_admin": ("市级管理员", "City administrator"),
    "role.district_admin": ("区级管理员", "District administrator"),
    "role.school_admin": ("学校管理员", "School administrator"),
    "role.teacher": ("教师", "Teacher"),
    "role.student": ("学生", "Student"),
    "role.parent": ("家长", "Parent"),
    "role.auditor": ("审计员", "Auditor"),
    "role.vendor_developer": ("应用开发者", "App developer"),
}


def register_messages(messages: Mapping[str, tuple[str, str]]) -> None:
    """Add another module's page messages (the OAuth pages' do this at import); a key means one thing only."""
    clashes = sorted(key for key, texts in messages.items() if MESSAGES.get(key, texts) != texts)
    if clashes:
        raise ValueError(f"page messages defined twice with different texts: {', '.join(clashes)}")
    MESSAGES.update(messages)


def translate(language: str, key: str, **params: Any) -> str:
    """The message ``key`` in ``language`` with ``params`` filled in; an unknown key is a bug, so it raises."""
    zh, en = MESSAGES[key]
    text = zh if language == "zh" else en
    return text.format(**params) if params else text
