"""Command line of the app store service: `python -m appstore <command>`."""

from __future__ import annotations

import argparse
import json
import sys

from appstore.config import AppStoreSettings, get_settings
from appstore.main import migrate
from kit.app import serve as serve_http


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appstore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser(
        "load-demo", help="load the demo vendor, apps and installation once (waits for the directory); prints JSON"
    )
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--reload", action="store_true")
    args = parser.parse_args(argv)
    settings = get_settings()

    if args.command == "migrate":
        migrate(settings)
        return 0
    if args.command == "load-demo":
        return load_demo(settings)
    serve_http("appstore.main:create_app", settings, reload=args.reload)
    return 0


def load_demo(settings: AppStoreSettings) -> int:
    """Load the demo data once; print what was loaded and the sample vendor app's settings as JSON."""
    from appstore import demo
    from appstore.identity_client import IdentityClient
    from kit.crypto import FieldCipher
    from kit.db import Database

    database = Database(settings.database_url)
    identity = IdentityClient(settings)
    cipher = FieldCipher(
        settings.secrets_encryption_key.get_secret_value(), settings.secrets_hash_key.get_secret_value()
    )
    try:
        result = demo.load(database, settings, cipher, identity)
    finally:
        identity.close()
        database.dispose()
    print(json.dumps(result.as_json(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
