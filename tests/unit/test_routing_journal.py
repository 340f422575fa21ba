"""Plain data, no Docker: the proxy's routing state and the operation journal."""

from __future__ import annotations

import errno
import os

import pytest

from headway.errors import ProxyError
from headway.proxy.routes import Route, RouteCanary, RouteMaintenance
from headway.proxy.routing import parse_state, render_state
from headway.release.plan import DeployPlan, NewContainer, plan_from_data, plan_to_data
from headway.state.journal import Journal, JournalFull


def route(**kw: object) -> Route:
    base: dict[str, object] = {"app": "shop", "environment": "production", "release": "v 1/ä", "deploy": 7,
                               "upstreams": ["10.0.0.2:8000", "10.0.0.3:8000"]}
    return Route.model_validate({**base, **kw})


def test_routing_round_trips_every_field():
    r = route(canary=RouteCanary(release="v2", deploy=8, upstreams=["10.0.0.9:8000"], weight=20, sticky="cookie"),
              maintenance=RouteMaintenance(allow=["203.0.113.0/24", "2001:db8::/32"]))
    text = render_state({r.key: r}, {r.key: "abc123"})
    state = parse_state(text)
    assert state is not None
    served = state.routes["shop--production"]
    assert (served.release, served.deploy, served.peers) == ("v 1/ä", 7, ["10.0.0.2:8000", "10.0.0.3:8000"])
    assert (served.canary_release, served.canary_deploy, served.weight, served.sticky) == ("v2", 8, 20, "cookie")
    assert served.maintenance and served.allow == ["203.0.113.0/24", "2001:db8::/32"]
    assert served.certificate == "abc123"
    # the same routing always has the same version; another routing another one
    assert render_state({r.key: r}, {r.key: "abc123"}) == text
    other = render_state({r.key: r.model_copy(update={"deploy": 9})}, {r.key: "abc123"})
    assert parse_state(other).version != state.version  # type: ignore[union-attr]
    # what the proxy serves can be written back into the route file
    back = served.apply_to(route(upstreams=[]))
    assert back.upstreams == r.upstreams and back.canary is not None and back.canary.weight == 20
    assert back.maintenance is not None and back.maintenance.allow == ["203.0.113.0/24", "2001:db8::/32"]


def test_a_peer_that_is_not_an_address_is_refused():
    with pytest.raises(ProxyError, match="not a valid ip:port"):
        render_state({"a--b": route(app="a", environment="b", upstreams=["db:5432; evil"])})


def test_garbage_is_not_a_routing_state():
    assert parse_state("hello\nworld") is None
    assert parse_state("") is None


def test_plan_round_trips_as_data():
    plan = DeployPlan(number=4, version="v4", color="green", start=[NewContainer("a-web-4-1", "web", 1)],
                      replicas={"web": 1}, retire=[3], standby=3, prune=[1])
    assert plan_from_data(plan_to_data(plan)) == plan


def test_journal_open_operation_and_a_torn_line(tmp_path):
    j = Journal(tmp_path)
    op = j.begin("deploy", {"number": 1}, by="me@host", started_at="now")
    j.step(op, "switched")
    j.end(op, "finished")
    second = j.begin("deploy", {"number": 2}, by="me@host", started_at="now")
    j.step(second, "switched")
    with open(j.path, "ab") as fh:
        fh.write(b'{"op": "' + second.id.encode() + b'", "event": "end", "how": "fin')  # killed mid-write
    open_op = j.open_operation()
    assert open_op is not None and open_op.id == second.id and open_op.steps == ["switched"]
    assert open_op.plan == {"number": 2}
    assert [o.ended for o in j.operations()] == ["finished", None]


def test_a_full_disk_is_a_clear_error(tmp_path, monkeypatch):
    j = Journal(tmp_path)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(JournalFull, match="is full") as info:
        j.begin("deploy", {}, by="me", started_at="now")
    assert "free disk space" in (info.value.fix or "")
