from __future__ import annotations

import textwrap

import pytest

from headway.config.dockerfile import DockerfileError, parse_dockerfile


def _parse(text: str, target: str | None = None):  # type: ignore[no-untyped-def]
    return parse_dockerfile(textwrap.dedent(text), target)


def test_the_last_stage_or_the_target_and_what_it_inherits() -> None:
    text = """\
        # syntax=docker/dockerfile:1
        ARG BASE=python:3.11-slim
        FROM ${BASE} AS base
        ENV APP_PORT=8000
        EXPOSE ${APP_PORT}
        CMD ["serve"]

        FROM base AS worker
        CMD ["python", "-m", "worker"]

        FROM node:20 AS assets
        RUN <<EOF
        echo "EXPOSE 1"
        CMD not-this
        EOF
        EXPOSE 5173
        """
    last = _parse(text)
    assert (last.stage, last.base, last.ports, last.cmd) == ("assets", "node:20", [5173], None)
    worker = _parse(text, "worker")
    assert (worker.base, worker.ports, worker.cmd) == ("python:3.11-slim", [8000], ["python", "-m", "worker"])
    assert worker.env == {"APP_PORT": "8000"}


def test_entrypoint_drops_an_inherited_cmd_but_not_its_own() -> None:
    inherited = _parse('FROM alpine AS a\nCMD ["x"]\nFROM a\nENTRYPOINT ["/init"]\n')
    assert (inherited.entrypoint, inherited.cmd) == (["/init"], None)
    own = _parse('FROM alpine\nCMD ["x"]\nENTRYPOINT ["/init"]\n')
    assert (own.entrypoint, own.cmd) == (["/init"], ["x"])


def test_continuations_comments_shell_form_and_escape_directive() -> None:
    facts = _parse("""\
        FROM python:3.11
        CMD gunicorn app:app \\
        # a comment inside the instruction
            --bind 0.0.0.0:8000
        HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost:8000/ || exit 1
        """)
    assert facts.cmd == "gunicorn app:app --bind 0.0.0.0:8000"
    assert facts.healthcheck == "curl -f http://localhost:8000/ || exit 1"
    assert facts.healthcheck_options == {"interval": "5s", "retries": "3"}
    windows = parse_dockerfile("# escape=`\nFROM mcr.microsoft.com/iis\nEXPOSE `\n  8080\n")
    assert windows.ports == [8080]


def test_base_images_with_a_known_port() -> None:
    facts = _parse("FROM node:20 AS build\nFROM nginx:1.27-alpine\nCOPY --from=build /dist /usr/share/nginx/html\n")
    assert (facts.ports, facts.base_port) == ([], 80)
    assert _parse("FROM python:3.11\nHEALTHCHECK NONE\n").healthcheck is None


def test_errors_name_the_problem() -> None:
    with pytest.raises(DockerfileError, match="no stage 'prod'.*stages: build"):
        _parse("FROM node AS build\nFROM nginx\n", "prod")
    with pytest.raises(DockerfileError, match="no FROM"):
        _parse("RUN echo\n")
