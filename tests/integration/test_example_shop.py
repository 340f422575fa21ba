"""The bundled example app end to end: PostgreSQL and Redis accessories, migrations as the release command,
a staging seed, a queue worker, and two environments on one host that never share data."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import REPO, AppDir, RunningProxy, _cleanup_app, free_port

pytestmark = [pytest.mark.docker, pytest.mark.proxy]


@pytest.fixture
def shop(tmp_path: Path, proxy: RunningProxy, docker_engine) -> Iterator[AppDir]:  # type: ignore[no-untyped-def]
    name = f"shop{uuid.uuid4().hex[:6]}"
    root = tmp_path / "shop"
    shutil.copytree(REPO / "examples" / "shop", root, ignore=shutil.ignore_patterns(".mypy_cache", "__pycache__"))
    ports = {"production": free_port(), "staging": free_port()}
    text = (root / "headway.yml").read_text().replace("app: shop", f"app: {name}")
    text = text.replace("port: 8080", f"port: {ports['production']}").replace("port: 8081",
                                                                              f"port: {ports['staging']}")
    text = text.replace("[shop.localhost]", f"[{name}.localhost]").replace(
        "[staging.shop.localhost]", f"[staging.{name}.localhost]")
    (root / "headway.yml").write_text(text)
    for env in ports:
        secrets = root / ".headway" / f"secrets.{env}"
        secrets.write_text(f"POSTGRES_PASSWORD={env}-{uuid.uuid4().hex}\n")
        secrets.chmod(0o600)
    app = AppDir(root, name, proxy.state_dir, ports)
    yield app
    _cleanup_app(docker_engine, name)
    for env in ports:
        if proxy.proxy.routes.get(name, env) is not None:
            proxy.proxy.drop_route(name, env)


def wait_for_order(url: str, order_id: int, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        order = httpx.get(f"{url}orders/{order_id}", timeout=5).json()
        if order["status"] == "done" or time.monotonic() > deadline:
            return order  # type: ignore[no-any-return]
        time.sleep(0.2)  # the worker picks the order from the queue on its own schedule


def test_shop_production_and_staging(shop: AppDir) -> None:
    prod, staging = shop.headway("production"), shop.headway("staging")
    prod.deploy(version="s1")
    staging.deploy(version="s1")
    prod_url, staging_url = shop.url("production"), shop.url("staging")
    ready = httpx.get(prod_url + "health/ready", timeout=5)
    assert ready.status_code == 200, ready.text
    assert "ok" in ready.text

    created = httpx.post(prod_url + "orders", json={"item": "book", "qty": 2}, timeout=5)
    assert created.status_code == 201, created.text
    order = wait_for_order(prod_url, created.json()["id"])
    assert order["status"] == "done", order

    # staging has its own database: seeded, and without production's order
    prod_ids = {c.id for c in prod.deployer.accessories()}
    staging_ids = {c.id for c in staging.deployer.accessories()}
    assert prod_ids.isdisjoint(staging_ids)
    assert httpx.get(f"{staging_url}orders/{created.json()['id']}", timeout=5).status_code in (404, 200)
    vols = {v.name for v in prod.engine.volumes([f"dev.headway.app={shop.name}"])}
    assert any("-production-db-" in v for v in vols) and any("-staging-db-" in v for v in vols)

    # a redeploy keeps the data (the database is an accessory, not part of a release)
    prod.deploy(version="s2")
    assert httpx.get(f"{prod_url}orders/{created.json()['id']}", timeout=5).json()["item"] == "book"
    assert httpx.get(prod_url, timeout=5).json()["release"] == "s2"
