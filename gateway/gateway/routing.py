"""Matching a public request path to a service route of the catalogue in ``contracts.api``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from contracts.api import API_PREFIX, RouteSpec, ServiceApi


@dataclass(frozen=True, slots=True)
class RouteMatch:
    api: ServiceApi
    route: RouteSpec
    public_template: str  # /api/identity/people/{person_id}, for metrics and usage records
    upstream_path: str  # the path as the client sent it (still percent-encoded), without /api/<service>
    params: dict[str, str]  # decoded path parameters

    @property
    def service(self) -> str:
        return self.api.service

    @property
    def route_key(self) -> str:
        return f"{self.api.service} {self.route.method} {self.route.path}"


@dataclass(frozen=True, slots=True)
class MethodMismatch:
    """The path names a route, but not with this method."""

    allowed: tuple[str, ...]


class UnsafePath(ValueError):
    """A segment that could climb out of the route at the service (``..``, an encoded slash)."""


@dataclass(frozen=True, slots=True)
class _CompiledRoute:
    route: RouteSpec
    segments: tuple[str | None, ...]  # literal, or None for a parameter
    names: tuple[str, ...]
    public_template: str
    specificity: int  # literals count first: /people/me beats /people/{person_id}


def _compile(api: ServiceApi, route: RouteSpec) -> _CompiledRoute:
    parts = [part for part in route.path.split("/") if part]
    segments = tuple(None if part.startswith("{") else part for part in parts)
    names = tuple(part[1:-1] for part in parts if part.startswith("{"))
    literal_count = sum(segment is not None for segment in segments)
    return _CompiledRoute(route, segments, names, api.prefix + route.path, literal_count)


_FORBIDDEN_IN_SEGMENT = ("%2f", "%5c", "\\")


class RouteTable:
    """Every service's routes, by service and by number of segments, for matching without regexes."""

    def __init__(self, apis: Iterable[ServiceApi]) -> None:
        self.apis = {api.service: api for api in apis}
        self._routes: dict[str, dict[int, list[_CompiledRoute]]] = {}
        for api in self.apis.values():
            by_length: dict[int, list[_CompiledRoute]] = {}
            for route in api.routes:
                compiled = _compile(api, route)
                by_length.setdefault(len(compiled.segments), []).append(compiled)
            for candidates in by_length.values():
                candidates.sort(key=lambda item: -item.specificity)
            self._routes[api.service] = by_length
        exact: dict[str, ServiceApi] = {}
        prefixes: list[tuple[str, ServiceApi]] = []
        for api in self.apis.values():
            for path in api.root_paths:
                if path.endswith("/"):
                    prefixes.append((path, api))
                else:
                    exact[path] = api
        self._root_exact = exact
        self._root_prefixes = sorted(prefixes, key=lambda item: -len(item[0]))

    def root_api(self, path: str) -> ServiceApi | None:
        """The service whose root paths (OpenID Connect endpoints, sign-in pages) include ``path``."""
        api = self._root_exact.get(path)
        if api is not None:
            return api
        for prefix, candidate in self._root_prefixes:
            if path.startswith(prefix):
                return candidate
        return None

    def match(self, method: str, raw_path: str) -> RouteMatch | MethodMismatch | None:
        """The route for ``method`` on ``raw_path`` (percent-encoded, starting with ``/api/``).

        :raises UnsafePath: a segment is ``.``/``..`` or hides a slash.
        """
        rest = raw_path[len(API_PREFIX) + 1 :]
        service, _, remainder = rest.partition("/")
        by_length = self._routes.get(service)
        if by_length is None:
            return None
        upstream_path = "/" + remainder
        parts = [part for part in remainder.split("/") if part]
        for part in parts:
            lowered = part.lower()
            if (
                part in (".", "..")
                or any(bad in lowered for bad in _FORBIDDEN_IN_SEGMENT)
                or lowered in ("%2e", "%2e%2e")
            ):
                raise UnsafePath(part)
        lookup_method = "GET" if method == "HEAD" else method
        allowed: list[str] = []
        for candidate in by_length.get(len(parts), ()):
            if not _segments_match(candidate.segments, parts):
                continue
            if candidate.route.method != lookup_method and not (method == "HEAD" and candidate.route.method == "HEAD"):
                allowed.append(candidate.route.method)
                continue
            params = {
                name: unquote(part)
                for name, part in zip(
                    candidate.names,
                    (part for part, segment in zip(parts, candidate.segments, strict=True) if segment is None),
                    strict=True,
                )
            }
            return RouteMatch(self.apis[service], candidate.route, candidate.public_template, upstream_path, params)
        if allowed:
            return MethodMismatch(tuple(sorted(set(allowed))))
        return None


def _segments_match(template: tuple[str | None, ...], parts: list[str]) -> bool:
    return all(segment is None or segment == part for segment, part in zip(template, parts, strict=True))
