"""The consent, logout and app-authorisation pages' messages (zh-CN, en)."""

from __future__ import annotations

OAUTH_MESSAGES: dict[str, tuple[str, str]] = {
    "consent.title": ("授权确认", "Authorise an app"),
    "consent.heading": ("“{client}”请求使用您的账号", "“{client}” wants to use your account"),
    "consent.signed_in_as": ("当前登录：{name}", "Signed in as {name}"),
    "consent.will_get": ("同意后，该应用将获得：", "If you agree, the app gets:"),
    "consent.fields": ("涉及的个人信息：", "Personal information involved:"),
    "consent.nothing_personal": ("不涉及个人信息", "No personal information"),
    "consent.guardian_needed": (
        "以下内容涉及未满 14 周岁学生的个人信息，需要监护人在其账号的“我的应用授权”中同意后才会提供给应用：",
        "The following involve personal information of a student under 14 and are given to the app only after a "
        "guardian agrees on their own “My app authorisations” page:",
    ),
    "consent.withdraw_note": (
        "您可以随时在“我的账号 → 我的应用授权”中撤回授权，撤回后该应用的访问令牌立即失效。",
        "You can withdraw this at any time under “My account → My app authorisations”; the app's tokens stop "
        "working at once.",
    ),
    "consent.approve": ("同意并继续", "Agree and continue"),
    "consent.deny": ("拒绝", "Decline"),
    "oauth_error.title": ("无法完成授权", "The app's request cannot be completed"),
    "oauth_error.body": (
        "应用发来的登录请求不正确，请返回应用重试，或联系应用的开发商。详情：",
        "The app's sign-in request is not valid. Go back to the app and try again, or contact its vendor. Details:",
    ),
    "logout.title": ("退出登录", "Sign out"),
    "logout.question": ("要退出城市教育统一身份登录吗？", "Sign out of the city education account?"),
    "logout.confirm": ("退出", "Sign out"),
    "apps.title": ("我的应用授权", "My app authorisations"),
    "apps.none": ("您还没有授权任何应用。", "You have not authorised any app."),
    "apps.scopes": ("已授权内容", "Authorised"),
    "apps.granted_at": ("授权时间", "Authorised on"),
    "apps.granted_by_guardian": ("（由监护人同意）", "(agreed by a guardian)"),
    "apps.withdraw": ("撤回授权", "Withdraw"),
    "apps.withdrawn": (
        "已撤回对“{client}”的授权，该应用的 {count} 个访问令牌已失效。",
        "Authorisation for “{client}” withdrawn; {count} of its access tokens no longer work.",
    ),
    "apps.children": ("孩子的应用授权请求", "Requests for your children's apps"),
    "apps.request": ("“{client}”请求获得{child}的以下信息：", "“{client}” asks for this information about {child}:"),
    "apps.approve": ("同意", "Agree"),
    "apps.decline": ("不同意", "Decline"),
    "apps.approved": (
        "已同意，应用下次为孩子登录时将获得这些信息。",
        "Agreed; the app gets this the next time your child signs in.",
    ),
    "apps.declined": ("已拒绝该请求。", "Request declined."),
    "apps.child_consents": ("{child}的应用授权", "{child}'s app authorisations"),
}
