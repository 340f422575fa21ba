"""Several HTTP roles on their own paths and an image per role: config checks, image plans and routing, without
Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from headway.config.loader import parse_config
from headway.config.resolve import resolve
from headway.errors import ConfigError
from headway.proxy.routes import Route, RoutePath
from headway.proxy.routing import parse_state, render_state
from headway.release.images import RELEASE, plan_images

TRACKER = """\
app: tracker
roles:
  frontend: {image: {dockerfile: Dockerfile.frontend}, port: 8080, path: /}
  api: {image: {dockerfile: Dockerfile.backend, name: localhost:5000/org/tracker-api}, port: 8000, path: /api}
  worker: {image: {dockerfile: Dockerfile.backend, name: localhost:5000/org/tracker-api}, command: python -m w}
release: {command: python -m app.migrate, role: api}
environments:
  production: {port: 8090}
"""


def target(text: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return resolve(parse_config(text), "production", tmp_path)


def test_roles_share_an_identical_build_and_the_release_runs_where_it_is_told(tmp_path: Path) -> None:
    plan = plan_images(target(TRACKER, tmp_path), "abc123")
    refs = {j.reference: sorted(j.users) for j in plan.jobs}
    assert refs == {"tracker-frontend:abc123": ["frontend"],
                    "localhost:5000/org/tracker-api:abc123": [RELEASE, "api", "worker"]}
    assert all(not j.pulled for j in plan.jobs)


def test_image_tag_pulls_every_image_from_its_repository(tmp_path: Path) -> None:
    text = TRACKER.replace("{dockerfile: Dockerfile.frontend}", "{dockerfile: Dockerfile.frontend, "
                                                                "name: localhost:5000/org/tracker-web}")
    plan = plan_images(target(text, tmp_path), "1.4.2", image_tag="1.4.2")
    assert {j.reference for j in plan.jobs} == {"localhost:5000/org/tracker-web:1.4.2",
                                                 "localhost:5000/org/tracker-api:1.4.2"}
    assert all(j.pulled for j in plan.jobs)


def test_image_tag_needs_a_repository_to_pull_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no `name`"):
        plan_images(target(TRACKER, tmp_path), "v1", image_tag="v1")


def test_a_prebuilt_image_is_pulled_as_given_or_at_the_tag(tmp_path: Path) -> None:
    text = "app: shop\nimage: registry.example.com/org/shop:1.0\nroles:\n  web: {port: 8000}\n" \
           "environments:\n  production: {}\n"
    t = target(text, tmp_path)
    assert [(j.reference, j.pulled) for j in plan_images(t, "x").jobs] == [("registry.example.com/org/shop:1.0",
                                                                            True)]
    assert plan_images(t, "x", image_tag="2.0").jobs[0].reference == "registry.example.com/org/shop:2.0"


@pytest.mark.parametrize("roles, message", [
    ("  a: {port: 80}\n  b: {port: 81}\n", "both serve path /"),
    ("  a: {port: 80, path: /api}\n  b: {port: 81, path: /api/}\n", "both serve path /api"),
    ("  a: {port: 80, path: api}\n", "must start with /"),
    ("  a: {path: /x}\n", "need the role's `port`"),
    ("  a: {port: 80, strip_prefix: true}\n", "needs a `path` other than /"),
    ("  a: {port: 80, image: 'Not An Image!'}\n", "is not an image reference"),
    ("  a: {port: 80, stop_signal: SIGFOO}\n", "stop_signal"),
])
def test_bad_roles_are_named(roles: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f"app: x\nroles:\n{roles}environments:\n  production: {{}}\n")


def test_every_role_with_its_own_image_needs_the_release_role_named() -> None:
    text = TRACKER.replace("release: {command: python -m app.migrate, role: api}", "release: python -m app.migrate")
    with pytest.raises(ConfigError, match="say which one runs the release command"):
        parse_config(text)


def test_the_registry_password_is_a_reference_never_a_value() -> None:
    with pytest.raises(ConfigError, match="secret reference"):
        parse_config("app: x\nregistry: {server: r.example.com, username: ci, password: hunter2}\n"
                     "roles:\n  web: {port: 80}\nenvironments:\n  production: {}\n")


def test_role_peers_round_trip_through_the_routing_state() -> None:
    route = Route(app="tracker", environment="production", release="v1", deploy=3,
                  upstreams=["frontend@10.0.0.2:8080", "api@10.0.0.3:8000"],
                  paths=[RoutePath(role="frontend"), RoutePath(role="api", path="/api", strip_prefix=True)])
    state = parse_state(render_state({route.key: route}))
    assert state is not None
    assert state.routes[route.key].peers == ["frontend@10.0.0.2:8080", "api@10.0.0.3:8000"]


def test_locations_are_longest_first_and_exempt_paths_find_their_role() -> None:
    from headway.proxy.routes import RouteMaintenance

    route = Route(app="t", environment="p", release="v", deploy=1,
                  paths=[RoutePath(role="web"), RoutePath(role="api", path="/api"),
                         RoutePath(role="admin", path="/api/admin")],
                  maintenance_rules=RouteMaintenance(exempt_paths=["/health", "/api/health", "/api/admin/up"]))
    assert [p.path for p in route.locations] == ["/api/admin", "/api", "/"]
    assert [(path, loc.role) for path, loc in route.exempt_locations()] == [
        ("/health", "web"), ("/api/health", "api"), ("/api/admin/up", "admin")]
    bare = Route(app="t", environment="p", release="v", deploy=1)
    assert [(p.role, p.path) for p in bare.locations] == [("", "/")]


def test_an_app_image_no_role_uses_is_not_a_build_source(tmp_path: Path) -> None:
    from headway.release.source import target_builds

    builds = target_builds(target(TRACKER, tmp_path))
    assert sorted(b.dockerfile for b in builds) == ["Dockerfile.backend", "Dockerfile.frontend"]
