"""Command line of the identity service: `python -m identity <command>`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from identity.config import get_settings
from identity.demo import DEMO_PASSWORD, load
from identity.keys import service as keys
from identity.main import migrate
from identity.oauth import clients
from identity.oauth.errors import InvalidClientMetadata
from kit.app import serve as serve_http
from kit.crypto import FieldCipher
from kit.db import Database

MIN_PLATFORM_SECRET_LENGTH = 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m identity", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser("load-demo", help="load the demo city once; prints the demo logins as JSON")
    commands.add_parser("rotate-key", help="publish a new signing key")
    platform_client = commands.add_parser(
        "ensure-platform-client",
        help="create or update a first-party client (idempotent): confidential client-credentials by default, "
        "or with --public a public authorization-code client with PKCE (a portal signing people in)",
    )
    platform_client.add_argument("--client-id", required=True)
    platform_client.add_argument("--scope", required=True, help="space-separated platform scopes")
    platform_client.add_argument(
        "--secret-env", default=None, help="environment variable holding its secret (not for --public)"
    )
    platform_client.add_argument(
        "--redirect-uri", action="append", default=[], dest="redirect_uris",
        help="a redirect URI of the authorization-code flow (repeat for several)",
    )  # fmt: skip
    platform_client.add_argument(
        "--public", action="store_true", help="a public client: authorization code with PKCE, no secret"
    )
    platform_client.add_argument("--name", default=None, help="display name; the client id by default")
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--reload", action="store_true")
    args = parser.parse_args(argv)
    settings = get_settings()

    if args.command == "migrate":
        migrate(settings)
        return 0
    if args.command == "ensure-platform-client":
        secret: str | None = None
        if args.public:
            if args.secret_env:
                print("a public client has no secret: leave out --secret-env", file=sys.stderr)
                return 2
            if not args.redirect_uris:
                print("a public client needs --redirect-uri", file=sys.stderr)
                return 2
        else:
            secret = os.environ.get(args.secret_env or "", "")
            if len(secret) < MIN_PLATFORM_SECRET_LENGTH:
                print(
                    f"set {args.secret_env or '--secret-env'} to the client's secret "
                    f"({MIN_PLATFORM_SECRET_LENGTH} characters or more)",
                    file=sys.stderr,
                )
                return 2
        database = Database(settings.database_url)
        try:
            with database.session() as session:
                row, created = clients.ensure_platform_client(
                    session, client_id=args.client_id, scope=args.scope, secret=secret, name=args.name,
                    redirect_uris=args.redirect_uris, public=args.public,
                    production=settings.environment == "production",
                )  # fmt: skip
                print(json.dumps({"client_id": row.client_id, "scope": row.scope, "created": created}))
        except InvalidClientMetadata as error:
            print(f"{error.detail}: {[e.message for e in error.errors]}", file=sys.stderr)
            return 2
        finally:
            database.dispose()
        return 0
    if args.command in ("load-demo", "rotate-key"):
        database = Database(settings.database_url)
        cipher = FieldCipher(settings.pii_encryption_key.get_secret_value(), settings.pii_hash_key.get_secret_value())
        with database.session() as session:
            if args.command == "rotate-key":
                key = keys.rotate(session, settings)
                print(json.dumps({"kid": key.kid, "signs_from": key.signs_from.isoformat()}))
            else:
                keys.ensure_signing_key(session, settings)
                logins = load(session, cipher)
                print(json.dumps({
                    "loaded": logins is not None,
                    "password": DEMO_PASSWORD,
                    "logins": [login.__dict__ for login in logins or []],
                }, ensure_ascii=False))  # fmt: skip
        database.dispose()
        return 0
    serve_http("identity.main:create_app", settings, reload=args.reload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
