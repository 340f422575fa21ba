"""What a Dockerfile says about the image it builds: exposed ports, CMD, ENTRYPOINT and HEALTHCHECK of the stage
that is shipped (the `target`, else the last), following `FROM <earlier stage>` chains the way the builder does."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DockerfileError", "ImageFacts", "parse_dockerfile", "read_dockerfile"]

# Ports of well-known base images that a stage built on them serves without an EXPOSE of its own.
_BASE_PORTS = {"nginx": 80, "openresty": 80, "httpd": 80, "caddy": 80, "nginx-unprivileged": 8080}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class DockerfileError(ValueError):
    """The Dockerfile cannot be used (missing, unreadable, or no such stage); the message says which."""


@dataclass
class ImageFacts:
    """The shipped stage's settings. `cmd`/`entrypoint`: a list (exec form) or a string (shell form)."""

    stage: str | None = None
    base: str = ""  # the external image the stage chain starts from
    ports: list[int] = field(default_factory=list)  # EXPOSE
    base_port: int | None = None  # what a well-known base image (nginx, httpd) serves on without an EXPOSE
    cmd: list[str] | str | None = None
    entrypoint: list[str] | str | None = None
    healthcheck: list[str] | str | None = None  # the check command, CMD prefix removed
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def copy(self) -> ImageFacts:
        return ImageFacts(stage=self.stage, base=self.base, ports=list(self.ports), base_port=self.base_port,
                          cmd=self.cmd, entrypoint=self.entrypoint, healthcheck=self.healthcheck,
                          healthcheck_options=dict(self.healthcheck_options), env=dict(self.env))


def read_dockerfile(path: Path, target: str | None = None) -> ImageFacts:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DockerfileError(f"{path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DockerfileError(f"{path} cannot be read ({exc})") from None
    return parse_dockerfile(text, target, str(path))


def _logical_lines(text: str) -> list[str]:
    """Instructions one per line: comments dropped, continuations joined, heredoc bodies skipped."""
    lines = text.splitlines()
    escape = "\\"
    for line in lines:
        m = re.match(r"\s*#\s*escape\s*=\s*(\S)", line)
        if m:
            escape = m.group(1)
            break
        if line.strip() and not re.match(r"\s*#\s*\w+\s*=", line):
            break
    out: list[str] = []
    buf = ""
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if stripped.endswith(escape):
            buf += stripped[:-1].rstrip() + " "
            continue
        buf += stripped
        heredoc = re.search(r"<<(-?)[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?", buf)
        if heredoc and re.match(r"\s*(RUN|COPY|ADD)\b", buf, re.IGNORECASE):
            word = heredoc.group(2)
            while i < len(lines) and lines[i].strip() != word:
                i += 1
            i += 1
        out.append(buf)
        buf = ""
    if buf:
        out.append(buf)
    return out


def _expand(text: str, scope: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        op, word = m.group(2), m.group(3)
        value = scope.get(name)
        if op == "-":
            return value if value else (word or "")
        if op == "+":
            return (word or "") if value else ""
        return value if value is not None else m.group(0)

    return _VAR.sub(sub, text)


def _json_or_shell(rest: str) -> list[str] | str:
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return text


def _pairs(rest: str) -> dict[str, str]:
    """ENV/ARG arguments: `K=V K2="v 2"` or the legacy `K value with spaces`."""
    import shlex

    try:
        words = shlex.split(rest)
    except ValueError:
        words = rest.split()
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])} if len(words) > 1 else {words[0]: ""}
    out = {}
    for word in words:
        key, _, value = word.partition("=")
        out[key] = value
    return out


def parse_dockerfile(text: str, target: str | None = None, name: str = "Dockerfile") -> ImageFacts:
    stages: list[ImageFacts] = []
    by_name: dict[str, ImageFacts] = {}
    global_args: dict[str, str] = {}
    current: ImageFacts | None = None
    scope: dict[str, str] = {}
    cmd_set = False
    for line in _logical_lines(text):
        m = re.match(r"(\w+)\s*(.*)", line, re.DOTALL)
        if not m:
            continue
        word, rest = m.group(1).upper(), m.group(2)
        if word == "FROM":
            args = [a for a in rest.split() if not a.startswith("--")]
            if not args:
                continue
            image = _expand(args[0], global_args)
            alias = args[2].lower() if len(args) >= 3 and args[1].upper() == "AS" else None
            parent = by_name.get(image.lower())
            if parent is None and image.isdigit() and int(image) < len(stages):
                parent = stages[int(image)]
            if parent is not None:
                current = parent.copy()
            else:
                current = ImageFacts(base=image)
                repo = re.sub(r"[:@].*$", "", image.rsplit("/", 1)[-1]).lower()
                if repo in _BASE_PORTS:
                    current.base_port = _BASE_PORTS[repo]
            current.stage = alias
            stages.append(current)
            if alias:
                by_name[alias] = current
            scope = {**global_args, **current.env}
            cmd_set = False
            continue
        if current is None:
            if word == "ARG":
                for key, value in _pairs(rest).items():
                    global_args[key] = value
            continue
        if word == "ARG":
            for key, value in _pairs(rest).items():
                scope[key] = _expand(value, scope) if value else global_args.get(key, scope.get(key, ""))
        elif word == "ENV":
            for key, value in _pairs(rest).items():
                current.env[key] = scope[key] = _expand(value, scope)
        elif word == "EXPOSE":
            for item in _expand(rest, scope).split():
                port = item.split("/", 1)[0]
                if port.isdigit() and 1 <= int(port) <= 65535 and int(port) not in current.ports:
                    current.ports.append(int(port))
        elif word == "CMD":
            current.cmd, cmd_set = _json_or_shell(rest), True
        elif word == "ENTRYPOINT":
            current.entrypoint = _json_or_shell(rest)
            if not cmd_set:
                current.cmd = None  # the builder drops an inherited CMD when a stage sets ENTRYPOINT
        elif word == "HEALTHCHECK":
            options = dict(re.findall(r"--([a-z-]+)=(\S+)", rest))
            body = re.sub(r"^(\s*--[a-z-]+=\S+)*\s*", "", rest)
            if body.upper().startswith("NONE"):
                current.healthcheck, current.healthcheck_options = None, {}
            elif body.upper().startswith("CMD"):
                current.healthcheck = _json_or_shell(body[3:])
                current.healthcheck_options = options
    if not stages:
        raise DockerfileError(f"{name} has no FROM instruction")
    if target is None:
        return stages[-1]
    if target.lower() not in by_name:
        known = ", ".join(s.stage for s in stages if s.stage) or "none named"
        raise DockerfileError(f"{name} has no stage {target!r} (stages: {known})")
    return by_name[target.lower()]
