"""Organisation-scoped access rules of the identity directory, on top of the kit's checks."""

from __future__ import annotations

from collections.abc import Iterable

from identity.deps import Actor
from kit.auth import authorize
from kit.errors import InsufficientScope


def scope_paths(actor: Actor, roles: Iterable[str]) -> list[str]:
    """The subtrees in which the caller holds one of ``roles``."""
    wanted = set(roles)
    return [claim.org_path for claim in actor.principal.roles if claim.role in wanted]


def require_scope(actor: Actor, scope: str) -> None:
    if not actor.principal.has_scope(scope):
        raise InsufficientScope(f"This operation needs the OAuth scope '{scope}'.", required_scope=scope)


def require(actor: Actor, *, roles: Iterable[str], org_path: str, scope: str) -> None:
    """Role within the subtree containing ``org_path``, and the scope; raises problem 403 otherwise."""
    authorize(actor.principal, roles=roles, org_path=org_path, scope=scope)
