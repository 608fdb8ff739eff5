"""App store routes: webhooks. A vendor's developers (apps.develop) manage their app's signing secret, read its
deliveries with their attempts, replay them from a cursor and send dead letters again; never open to apps."""

from __future__ import annotations

from contracts.api.routes import RouteSpec

_DEVELOP = ("apps.develop",)
_APP = "/apps/{app_id}"

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(method="POST", path=f"{_APP}/webhook-secret", scopes=_DEVELOP,
              summary="Create or rotate the app's webhook signing secret (shown once)", rate_limit="10/minute"),
    RouteSpec(method="GET", path=f"{_APP}/webhook-deliveries", scopes=_DEVELOP,
              summary="List the app's webhook deliveries after a cursor"),
    RouteSpec(method="GET", path=f"{_APP}/webhook-deliveries/{{delivery_id}}", scopes=_DEVELOP,
              summary="Read one webhook delivery with its body and attempts"),
    RouteSpec(method="POST", path=f"{_APP}/webhook-deliveries/replay", scopes=_DEVELOP,
              summary="Send the app's deliveries from a cursor again", rate_limit="30/minute"),
    RouteSpec(method="POST", path=f"{_APP}/webhook-deliveries/{{delivery_id}}/redeliver", scopes=_DEVELOP,
              summary="Send one delivered or dead-lettered delivery again"),
    RouteSpec(method="GET", path=f"{_APP}/webhook-dead-letters", scopes=_DEVELOP,
              summary="List the app's dead-lettered webhook deliveries"),
)  # fmt: skip
