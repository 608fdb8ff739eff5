"""Command line of the enrollment service: `python -m enrollment <command>`."""

from __future__ import annotations

import argparse
import json
import sys

from enrollment import demo
from enrollment.config import get_settings
from enrollment.main import migrate
from kit.app import serve as serve_http
from kit.db import Database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m enrollment", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser("load-demo", help="open the demo admission season once (waits for the directory)")
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--reload", action="store_true")
    args = parser.parse_args(argv)
    settings = get_settings()

    if args.command == "migrate":
        migrate(settings)
        return 0
    if args.command == "load-demo":
        database = Database(settings.database_url)
        try:
            season_id = demo.load(database)
        finally:
            database.dispose()
        print(json.dumps({"season_id": season_id}))
        return 0
    serve_http("enrollment.main:create_app", settings, reload=args.reload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
