"""Reading headway.yml: YAML with line numbers kept, so every error names file, line and key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from headway.config.model import AppConfig
from headway.errors import ConfigError

CONFIG_NAME = "headway.yml"


def find_config(start: Path | None = None, explicit: str | Path | None = None) -> Path:
    """The config given, or headway.yml in this directory or the nearest parent."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: no such file", "pass the path of your headway.yml with -c")
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no {CONFIG_NAME} in {here} or its parents",
                      "run `headway init` to write one, or pass -c path/to/headway.yml")


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})", "check the path and permissions") from None


def load_mapping(text: str, filename: str, *, top: str, fix: str) -> CommentedMap:
    """YAML text as a mapping that remembers line numbers; `top` names the keys expected at the top level."""
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{filename}{line}: invalid YAML: {exc.problem}",
                          "check indentation and quoting on that line") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}: expected a mapping at the top ({top})", fix)
    return data  # type: ignore[return-value]


def load_config(path: str | Path) -> AppConfig:
    path = Path(path)
    return parse_config(read_text(path), str(path))


def parse_config(text: str, filename: str = CONFIG_NAME) -> AppConfig:
    data = load_mapping(text, filename, top="app:, roles:, environments:",
                        fix="run `headway init` to see a starter file")
    try:
        return AppConfig.model_validate(_plain(data))
    except ValidationError as exc:
        lines = [_describe(err, data, filename) for err in exc.errors()]
        raise ConfigError(f"{filename}: {len(lines)} problem(s)\n" + "\n".join(f"  {ln}" for ln in lines),
                          "correct the keys above; `headway init` writes a commented example") from None


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _line_of(data: Any, loc: tuple[Any, ...]) -> tuple[int | None, list[str]]:
    """Walk the YAML tree along a pydantic error location; return the deepest line found and the key path."""
    node, line, keys = data, None, []
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            keys.append(str(part))
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            keys.append(f"[{part}]")
            node = node[part]
        elif isinstance(node, CommentedMap) and isinstance(part, str) and part not in ("http-check", "command-check"):
            keys.append(part)  # a key that is missing or unknown: report it at its parent
        # anything else is a pydantic-internal step (union tag, function name): skip it
    return line, keys


def _describe(err: Any, data: Any, filename: str) -> str:
    line, keys = _line_of(data, tuple(err["loc"]))
    where = f"{filename}:{line}" if line else filename
    dotted = ".".join(keys).replace(".[", "[") or "(top)"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        parent = _parent_fields(keys[:-1])
        hint = difflib.get_close_matches(keys[-1], parent, n=1)
        expected = f"did you mean `{hint[0]}`?" if hint else f"expected one of: {', '.join(parent)}"
        return f"{where}: {dotted}: unknown key; {expected}" if parent else f"{where}: {dotted}: unknown key"
    if kind == "missing":
        return f"{where}: {dotted}: required key is missing"
    msg = msg.removeprefix("Value error, ")
    if not keys and kind == "value_error":  # a check across sections names its key first: that key's line
        named = _line_of(data, tuple(msg.split(":", 1)[0].split(".")))[0]
        if named:
            return f"{filename}:{named}: {msg}"
    if kind == "string_pattern_mismatch":
        msg = "use lower-case letters, digits and dashes, starting with a letter"
    return f"{where}: {dotted}: {msg}"


def _parent_fields(keys: list[str]) -> list[str]:
    """Field names allowed under a key path, for 'did you mean' hints."""
    from headway.config import model

    if "alerts" in keys:  # the rule set's own keys below `alerts:` (app or environment)
        from headway.observe.alerts import rule_fields

        rest = keys[keys.index("alerts") + 1:]
        return [*rule_fields(rest), *(["channels"] if not rest else [])]
    if "autoscale" in keys and len(keys) > keys.index("autoscale") + 1:  # a role's rule below `autoscale:`
        from headway.config.autoscale import AutoscaleRule

        return list(AutoscaleRule.model_fields)
    cls: Any = model.AppConfig
    maps = {"roles": model.Role, "accessories": model.Accessory, "environments": model.Environment}
    direct = {"image": model.ImageBuild, "deploy": model.DeploySettings, "health": model.HttpHealth,
              "resources": model.Resources}
    i = 0
    while i < len(keys):
        key = keys[i]
        if key in maps and i + 1 < len(keys):
            cls, i = maps[key], i + 2
            continue
        if key in direct:
            cls = direct[key]
        i += 1
    fields = list(cls.model_fields)
    if cls is model.HttpHealth:
        fields += [f for f in model.CommandHealth.model_fields if f not in fields]
    return fields
