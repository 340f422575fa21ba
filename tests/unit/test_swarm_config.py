"""An environment on a Docker Swarm: what headway.yml must say, and the errors when it does not."""

from __future__ import annotations

import pytest

from headway.config.loader import parse_config
from headway.errors import ConfigError
from headway.remote.swarm import members_ruleset

SWARM = """\
app: shop
registry: {server: 10.0.0.1:5000, username: ci, password: "${REGISTRY_PASSWORD}"}
roles:
  web: {port: 8000, health: {path: /health}}
  worker: {command: python -m worker}
environments:
  production:
    hosts: [root@10.0.0.1]
    swarm:
      nodes: [root@10.0.0.2, deploy@10.0.0.3:2222]
      constraints: {worker: [node.role==worker]}
"""


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "headway.yml")
    return str(info.value)


def test_a_swarm_environment_parses() -> None:
    env = parse_config(SWARM).environments["production"]
    assert env.swarm is not None and env.remote_host == "root@10.0.0.1"
    assert env.swarm.nodes == ["root@10.0.0.2", "deploy@10.0.0.3:2222"]
    assert env.swarm.constraints == {"worker": ["node.role==worker"]}


def test_a_swarm_needs_a_registry() -> None:
    text = SWARM.replace('registry: {server: 10.0.0.1:5000, username: ci, password: "${REGISTRY_PASSWORD}"}\n', "")
    assert "pull the images from a registry" in problems(text)


def test_file_secrets_are_refused_on_a_swarm() -> None:
    text = SWARM.replace("roles:", "secrets:\n  JWT_SECRET: {as: file}\nroles:")
    message = problems(text)
    assert "as: file" in message and "JWT_SECRET" in message and "as: env" in message


def test_constraints_name_known_roles_and_nodes_are_ssh_addresses() -> None:
    assert "unknown role api" in problems(SWARM.replace("{worker: [node", "{api: [node"))
    assert "write user@host[:port]" in problems(SWARM.replace("root@10.0.0.2", "local"))
    assert "listed twice" in problems(SWARM.replace("deploy@10.0.0.3:2222", "root@10.0.0.2"))


def test_two_hosts_point_to_the_swarm_form() -> None:
    assert "swarm: {nodes:" in problems(SWARM.replace("hosts: [root@10.0.0.1]", "hosts: [root@10.0.0.1, root@b]"))


def test_the_members_file_adds_each_address_once() -> None:
    text = members_ruleset(["10.0.0.2", "10.0.0.1", "10.0.0.2"])
    assert "add element inet headway swarm_members { 10.0.0.1, 10.0.0.2 }" in text
