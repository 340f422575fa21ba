"""The example shop on a three-machine Docker Swarm, driven from a laptop-like checkout over SSH: `swarm init`
joins the machines (and changes nothing the second time), the web role's replicas run across the machines behind
the manager's proxy, redeploy and rollback drop no request of a strict client, and a machine killed under load
costs no failed request while its replicas start again elsewhere and the proxy follows them."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from bench.loadgen import SteadyLoad

from tests.remote.conftest import REGISTRY_USER, Swarm, git, shop_checkout

pytestmark = [pytest.mark.docker, pytest.mark.remote]


def swarm_checkout(tmp_path: Path, swarm: Swarm, *, password: str | None = None) -> tuple[Path, str]:
    """examples/shop as a developer's clone whose production runs on the swarm (3 web replicas)."""
    nodes = ", ".join(f"'{n.address}'" for n in swarm.nodes)
    return shop_checkout(
        tmp_path, "swshop", f"    hosts: ['{swarm.manager.address}']\n    swarm: {{nodes: [{nodes}]}}\n",
        edits=(("replicas: {web: 2, worker: 1}", "replicas: {web: 3, worker: 1}"),
               ("image:\n", f"registry: {{server: '{swarm.registry}', username: {REGISTRY_USER}, "
                            "password: '${REGISTRY_PASSWORD}'}\n\nimage:\n")),
        secrets={"REGISTRY_PASSWORD": password or swarm.registry_password})


@pytest.fixture(scope="module")
def shop_on_swarm(swarm_servers: Swarm, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The checkout, the swarm initialised from it (the first run recorded) and the manager's proxy booted."""
    swarm = swarm_servers
    root, name = swarm_checkout(tmp_path_factory.mktemp("swarm-shop"), swarm)
    first = swarm.manager.cli("swarm", "init", "-e", "production", "--json", cwd=root)
    assert first.returncode == 0, first.stderr
    boot = swarm.manager.cli("--host", str(swarm.manager.address), "proxy", "boot", cwd=root)
    assert boot.returncode == 0, boot.stderr
    yield swarm, root, name, json.loads(first.stdout)
    swarm.manager.cli("remove", "-e", "production", "--yes", "--volumes", cwd=root)


def _nodes(swarm: Swarm, root: Path) -> list[dict]:  # type: ignore[type-arg]
    out = swarm.manager.cli("swarm", "nodes", "-e", "production", "--json", cwd=root)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout)["nodes"])


def test_swarm_init_joins_every_machine_and_a_second_run_changes_nothing(shop_on_swarm) -> None:  # type: ignore[no-untyped-def]
    swarm, root, _, first = shop_on_swarm
    statuses = {s["step"]: s["status"] for s in first["steps"]}
    assert statuses[f"swarm manager {swarm.manager.address}"] == "changed"
    for node in swarm.nodes:
        assert statuses[f"swarm node {node.address}"] == "changed"
    again = swarm.manager.cli("swarm", "init", "-e", "production", "--json", cwd=root)
    assert again.returncode == 0, again.stderr
    assert {s["status"] for s in json.loads(again.stdout)["steps"]} == {"ok"}
    check = swarm.manager.cli("swarm", "init", "-e", "production", "--check", cwd=root)
    assert check.returncode == 0, check.stderr
    nodes = _nodes(swarm, root)
    assert len(nodes) == 3 and {n["state"] for n in nodes} == {"ready"}
    # each machine's firewall lets the other two in, and only for the swarm
    for server in swarm.servers:
        members = server.sh("nft list set inet headway swarm_members")
        assert all(swarm.ip(s) in members for s in swarm.servers), members


def test_shop_across_three_machines_redeploys_rolls_back_and_survives_a_machine_kill(shop_on_swarm
                                                                                     ) -> None:  # type: ignore[no-untyped-def]
    swarm, root, name, _ = shop_on_swarm
    host = {"Host": f"{name}.localhost"}
    url = swarm.manager.url(80, "/")
    first = swarm.manager.cli("deploy", "-e", "production", cwd=root)
    assert first.returncode == 0, first.stderr
    v1 = httpx.get(url, headers=host, timeout=10).json()["release"]
    placed = {n["hostname"]: n["containers"] for n in _nodes(swarm, root)}
    web_machines = {h for h, cs in placed.items() if any("-web-" in c for c in cs)}
    assert len(web_machines) >= 2, placed  # the replicas are spread
    # the images came through the registry, by digest
    assert swarm.registry in swarm.nodes[0].sh("docker ps --format '{{.Image}}'") + \
        swarm.nodes[1].sh("docker ps --format '{{.Image}}'")

    app_main = root / "app" / "main.py"
    app_main.write_text(app_main.read_text() + "\n# second release\n")
    git(root, "commit", "-qam", "second")
    with SteadyLoad(url, rate=60, max_seconds=600, headers=host, strict=True) as load:
        load.wait_for(50)
        second = swarm.manager.cli("deploy", "-e", "production", cwd=root)
        assert second.returncode == 0, second.stderr
        load.wait_for(load.result.sent + 50)
        back = swarm.manager.cli("rollback", "-e", "production", cwd=root)
        assert back.returncode == 0, back.stderr
        load.wait_for(load.result.sent + 50)
    assert load.result.failed == 0, load.result.summary()
    assert v1 in load.result.bodies and len(load.result.bodies) == 2
    assert httpx.get(url, headers=host, timeout=10).json()["release"] == v1

    # a machine that runs web replicas dies under load
    placed = {n["hostname"]: n["containers"] for n in _nodes(swarm, root)}
    victim = next(s for s in swarm.nodes if any("-web-" in c for c in placed.get(s.name, [])))
    dead_ip = swarm.ip(victim)
    with SteadyLoad(url, rate=60, max_seconds=300, headers=host, strict=True) as load:
        load.wait_for(50)
        killed_at = time.time()
        subprocess.run(["docker", "kill", victim.container], check=True, capture_output=True)
        load.wait_for(load.result.sent + 300, timeout=60)
        # the swarm sees the machine down and starts its replicas on the machines left; the agent routes them
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            nodes = _nodes(swarm, root)
            alive = {n["hostname"]: n["containers"] for n in nodes if n["state"] == "ready"}
            if victim.name not in alive and sum(1 for cs in alive.values() for c in cs if "-web-" in c) == 3:
                break
            time.sleep(1)  # the swarm's heartbeat and rescheduling, polled
        else:
            pytest.fail(f"the lost replicas did not start again: {nodes}")
        # a round of the host's agent on the manager routes them (no command needed): its config kept on the
        # host, its secrets withheld
        rounded = swarm.manager.exec("headway agent run --state-dir /var/lib/headway --once --port 19105",
                                     timeout=180)
        assert "follows" in rounded.stdout, rounded.stdout + rounded.stderr
        load.wait_for(load.result.sent + 120, timeout=60)
        recover = swarm.manager.cli("recover", "-e", "production", cwd=root)  # nothing left to do
        assert recover.returncode == 0 and "follows" not in recover.stdout + recover.stderr, recover.stderr
    assert load.result.failed == 0, load.result.summary()
    log = swarm.manager.sh("tail -n 3000 /var/lib/headway/proxy/logs/access.log")
    tried = [json.loads(line)["msec"] for line in log.splitlines()
             if line.strip().startswith("{") and dead_ip in json.loads(line)["upstream_addr"]]
    after = [t for t in tried if t > killed_at]
    # a dead machine is passed over once a request found it down: at most a try every few seconds
    assert len(after) <= 20, after
    routing = swarm.manager.sh("cat /var/lib/headway/proxy/routing.state 2>/dev/null || true")
    assert dead_ip not in routing
    # a deploy while the machine is down runs on the two left, and says which one is missing
    app_main.write_text(app_main.read_text() + "\n# third release\n")
    git(root, "commit", "-qam", "third")
    third = swarm.manager.cli("deploy", "-e", "production", cwd=root)
    assert third.returncode == 0, third.stderr
    assert f"swarm machine {victim.name} is down" in third.stderr
    assert httpx.get(url, headers=host, timeout=10).json()["release"] not in load.result.bodies


def test_a_registry_that_refuses_the_push_changes_nothing(shop_on_swarm, tmp_path: Path
                                                          ) -> None:  # type: ignore[no-untyped-def]
    swarm, root, name, _ = shop_on_swarm
    wrong, _ = swarm_checkout(tmp_path, swarm, password="not-the-password")
    text = (wrong / "headway.yml").read_text()
    (wrong / "headway.yml").write_text(text.replace("    port: 8080\n", "    port: 8082\n", 1))
    before = swarm.manager.sh("docker service ls --format '{{.Name}}' | sort")
    refused = swarm.manager.cli("deploy", "-e", "production", cwd=wrong)
    assert refused.returncode != 0
    assert "registry" in refused.stderr and "Traceback" not in refused.stderr
    assert "not-the-password" not in refused.stderr + refused.stdout
    assert swarm.manager.sh("docker service ls --format '{{.Name}}' | sort") == before
