"""Typed failures of installations, app requests and app credentials (problem+json through the kit)."""

from __future__ import annotations

from kit.errors import Conflict, NotFound


class AlreadyInstalled(Conflict):
    slug = "appstore/already-installed"
    title_zh = "应用已安装"
    title_en = "App already installed"

    def __init__(self, installation_id: str) -> None:
        super().__init__(
            "本校已安装该应用，如需调整授权请修改现有安装；"
            "The school has already installed this app: change the existing installation instead.",
            installation_id=installation_id,
        )


class AppNotInstallable(Conflict):
    slug = "appstore/app-not-installable"
    title_zh = "应用暂不可安装"
    title_en = "App not installable"

    def __init__(self, app_id: str, status: str) -> None:
        super().__init__(
            f"该应用当前状态为 {status}，只有已上架的应用可以安装或申请；"
            f"The app is {status}: only listed apps can be installed or requested.",
            app_id=app_id,
            app_status=status,
        )


class UnknownInstallation(NotFound):
    slug = "appstore/installation-not-found"
    title_zh = "安装记录不存在"
    title_en = "Installation not found"

    def __init__(self, installation_id: str) -> None:
        super().__init__(
            f"本校没有编号为 {installation_id[:64]} 的应用安装；"
            f"The school has no installation with the id {installation_id[:64]!r}.",
        )


class InstallationRemoved(Conflict):
    slug = "appstore/installation-removed"
    title_zh = "应用已卸载"
    title_en = "Installation removed"

    def __init__(self) -> None:
        super().__init__("该应用已从本校卸载，请重新安装；The app was uninstalled from the school: install it again.")


class DuplicateRequest(Conflict):
    slug = "appstore/duplicate-app-request"
    title_zh = "已有待审批的申请"
    title_en = "Request already pending"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            "您已申请过该应用，请等待学校管理员审批；You already asked for this app: wait for the school's decision.",
            request_id=request_id,
        )


class UnknownRequest(NotFound):
    slug = "appstore/app-request-not-found"
    title_zh = "应用申请不存在"
    title_en = "App request not found"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"本校没有编号为 {request_id[:64]} 的应用申请；The school has no app request {request_id[:64]!r}.",
        )


class RequestDecided(Conflict):
    slug = "appstore/app-request-decided"
    title_zh = "申请已处理"
    title_en = "Request already decided"

    def __init__(self, status: str) -> None:
        super().__init__(
            f"该申请已处理（{status}），不能再次审批；The request was already {status}.", request_status=status
        )


class NoManifestYet(Conflict):
    slug = "appstore/app-has-no-version"
    title_zh = "应用尚无版本"
    title_en = "App has no version yet"

    def __init__(self) -> None:
        super().__init__(
            "请先为应用创建一个版本（应用清单），再申请接入凭据；"
            "Create a version (manifest) of the app before asking for its credentials."
        )


class AppRetired(Conflict):
    slug = "appstore/app-retired"
    title_zh = "应用已淘汰"
    title_en = "App retired"

    def __init__(self) -> None:
        super().__init__("应用已被淘汰，不能再获取接入凭据；The app was retired: it gets no new credentials.")
