"""Command line of the metering service: `python -m metering <command>`."""

from __future__ import annotations

import argparse
import sys

from kit.app import serve as serve_http
from metering.config import get_settings
from metering.main import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metering", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--reload", action="store_true")
    args = parser.parse_args(argv)
    settings = get_settings()

    if args.command == "migrate":
        migrate(settings)
        return 0
    serve_http("metering.main:create_app", settings, reload=args.reload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
