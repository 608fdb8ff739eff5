"""Command line of the gateway: `python -m gateway <command>`."""

from __future__ import annotations

import argparse
import sys

from gateway.config import get_settings
from gateway.main import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (each with its own caches)")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "migrate":
        migrate(settings)
        return 0
    import uvicorn

    uvicorn.run(
        "gateway.main:create_app", factory=True, host=settings.http_host, port=settings.http_port,
        workers=args.workers, log_config=None, access_log=False, server_header=False,
        proxy_headers=bool(settings.trusted_proxies), forwarded_allow_ips=settings.trusted_proxies or None,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
