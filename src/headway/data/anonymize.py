"""Anonymized staging: rules from anonymize.yml, applied inside the target database with set-based SQL.

Every fake is derived from md5(salt || original value), so the same input always gives the same output, on
PostgreSQL and MySQL/MariaDB alike; distinct emails stay distinct, so unique indexes on them stay satisfied.
NULL stays NULL. All updates run in one transaction: a failure leaves the database as it was.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError
from ruamel.yaml.comments import CommentedMap

from headway.config.loader import _line_of, _plain, load_mapping, read_text
from headway.engine.container_io import ExecResult, exec_split, put_file
from headway.engine.docker import Container, DockerEngine
from headway.errors import ConfigError, ExitCode, HeadwayError

RULES_NAME = "anonymize.yml"
RuleKind = Literal["fake_email", "fake_name", "fake_phone", "hash", "null", "constant", "keep"]
RULE_KINDS: tuple[str, ...] = ("fake_email", "fake_name", "fake_phone", "hash", "null", "constant", "keep")
DERIVED = ("fake_email", "fake_name", "fake_phone", "hash")  # computed from the original value; NULL stays NULL
Engine = Literal["postgres", "mariadb", "mysql"]  # the names databases: uses
Dialect = Literal["postgres", "mysql"]  # the SQL spoken: MariaDB speaks MySQL's
PRODUCTION_NAMES = ("production", "prod")

EMAIL_HEX = 20  # 80 bits of md5: collisions are out of reach for any table size a staging copy has
EMAIL_DOMAIN = "example.invalid"  # RFC 2606: can never deliver
FIRST_NAMES = ("Alex", "Blake", "Casey", "Dana", "Drew", "Eden", "Ellis", "Emery", "Finley", "Gray", "Harper",
               "Hayden", "Jamie", "Jordan", "Kai", "Kendall", "Lane", "Logan", "Morgan", "Noel", "Parker", "Quinn",
               "Reese", "Riley", "Rowan", "Sage", "Sam", "Skyler", "Taylor", "Toby", "Val", "Wren")
LAST_NAMES = ("Abbott", "Archer", "Barker", "Baxter", "Carter", "Chandler", "Dalton", "Decker", "Ellison", "Fisher",
              "Foster", "Garner", "Hale", "Hughes", "Ingram", "Jensen", "Keller", "Lawson", "Marsh", "Mercer",
              "Nolan", "Osborne", "Porter", "Quincy", "Rhodes", "Sawyer", "Tanner", "Underwood", "Vance", "Walker",
              "Yates", "Zimmer")
OUTPUT_LENGTH = {"fake_email": len("user_@") + EMAIL_HEX + len(EMAIL_DOMAIN), "hash": 32,
                 "fake_phone": len("+1-200-555-0100"),
                 "fake_name": max(len(f) for f in FIRST_NAMES) + 1 + max(len(n) for n in LAST_NAMES)}
POSTGRES_TEXT = ("character varying", "character", "text", "citext")
MYSQL_TEXT = ("varchar", "char", "text", "tinytext", "mediumtext", "longtext")
MYSQL_TRANSACTIONAL = ("innodb", "aria", "rocksdb", "ndbcluster")  # Aria only with TRANSACTIONAL=1, checked below
SEP = "\x1f"  # field separator in psql output: never part of a table or column name we accept


# -- the rules file -----------------------------------------------------------------------------------------
class ColumnRule(BaseModel):
    """What happens to one column: a rule name, or a constant value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: RuleKind
    value: str | int | float | bool | None = None

    def describe(self) -> str:
        return f"constant {self.value!r}" if self.kind == "constant" else self.kind


def _parse_rule(raw: object) -> object:
    if isinstance(raw, ColumnRule):
        return raw
    if raw is None:
        return ColumnRule(kind="null")
    if isinstance(raw, str):
        if raw == "constant":
            raise ValueError('give the value: {constant: "..."}')
        if raw not in RULE_KINDS:
            hint = difflib.get_close_matches(raw, RULE_KINDS, n=1)
            said = f"did you mean `{hint[0]}`? " if hint else ""
            raise ValueError(f"unknown rule {raw!r}; {said}rules: fake_email, fake_name, fake_phone, hash, "
                             "null, keep, {constant: VALUE}")
        return ColumnRule(kind=raw)
    if isinstance(raw, dict):
        if set(raw) != {"constant"}:
            other = ", ".join(sorted(str(k) for k in raw if k != "constant")) or "nothing"
            raise ValueError(f"a mapping rule is {{constant: VALUE}}; found {other}")
        value = raw["constant"]
        if value is None:
            raise ValueError("{constant: null} — write `null` instead")
        if not isinstance(value, str | int | float | bool):
            raise ValueError("a constant is a string, number or boolean")
        return ColumnRule(kind="constant", value=value)
    raise ValueError(f"expected a rule name or {{constant: VALUE}}, not {type(raw).__name__}")


Rule = Annotated[ColumnRule, BeforeValidator(_parse_rule)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")]


class AnonymizeRules(BaseModel):
    """anonymize.yml: per table and column, what the staging copy gets instead of production's values."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tables: dict[Identifier, dict[Identifier, Rule]] = Field(default_factory=dict)
    default: Literal["keep"] = Field("keep", description="what happens to columns not listed")
    strict: bool = Field(False, description="require every text column of every table to be listed")
    _source: str = PrivateAttr(RULES_NAME)
    _lines: dict[tuple[str, ...], int] = PrivateAttr(default_factory=dict)

    def where(self, *keys: str) -> str:
        """`file:line` of a table or column entry (just the file when the rules were built in code)."""
        line = self._lines.get(keys)
        return f"{self._source}:{line}" if line else self._source

    @property
    def source(self) -> str:
        return self._source


def load_rules(path: str | Path) -> AnonymizeRules:
    path = Path(path)
    return parse_rules(read_text(path), str(path))


def parse_rules(text: str, filename: str = RULES_NAME) -> AnonymizeRules:
    data = load_mapping(text, filename, top="tables:, default:, strict:",
                        fix="see docs/databases.md, Anonymized staging, for an example")
    try:
        rules = AnonymizeRules.model_validate(_plain(data))
    except ValidationError as exc:
        lines = [_describe(err, data, filename) for err in exc.errors()]
        raise ConfigError(f"{filename}: {len(lines)} problem(s)\n" + "\n".join(f"  {ln}" for ln in lines),
                          "correct the entries above; docs/databases.md lists the rules") from None
    rules._source = filename
    tables = data.get("tables")
    if isinstance(tables, CommentedMap):
        for table, columns in tables.items():
            rules._lines[(str(table),)] = tables.lc.key(table)[0] + 1
            if isinstance(columns, CommentedMap):
                for column in columns:
                    rules._lines[(str(table), str(column))] = columns.lc.key(column)[0] + 1
    return rules


def _describe(err: Any, data: Any, filename: str) -> str:
    loc = tuple(err["loc"])
    line, keys = _line_of(data, loc)
    keys = [k for k in keys if k != "[key]"]  # pydantic's marker for a bad dict key
    where = f"{filename}:{line}" if line else filename
    dotted = ".".join(keys) or "(top)"
    kind, msg = err["type"], str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        fields = list(AnonymizeRules.model_fields)
        hint = difflib.get_close_matches(keys[-1], fields, n=1) if keys else []
        return f"{where}: {dotted}: unknown key; " + (f"did you mean `{hint[0]}`?" if hint else
                                                      f"expected one of: {', '.join(fields)}")
    if kind == "string_pattern_mismatch":
        msg = "a table or column name: letters, digits and _, starting with a letter or _"
    if loc[:1] == ("default",) and kind == "literal_error":
        msg = "only `keep` is supported: columns not listed keep their values (add `strict: true` to require " \
              "every text column to be listed)"
    return f"{where}: {dotted}: {msg}"


# -- deterministic fakes ------------------------------------------------------------------------------------
def fake_value(kind: str, value: str | None, salt: str = "") -> str | None:
    """What a derived rule turns `value` into; the SQL below computes exactly this inside the database."""
    if value is None:
        return None
    digest = hashlib.md5((salt + value).encode()).digest()  # noqa: S324 - a fingerprint, not a password hash
    hexed = digest.hex()
    if kind == "hash":
        return hexed
    if kind == "fake_email":
        return f"user_{hexed[:EMAIL_HEX]}@{EMAIL_DOMAIN}"
    if kind == "fake_name":
        return f"{FIRST_NAMES[digest[0] % 32]} {LAST_NAMES[digest[1] % 32]}"
    if kind == "fake_phone":
        return f"+1-{200 + (digest[2] * 256 + digest[3]) % 800}-555-01{digest[4] % 100:02d}"
    raise ValueError(f"{kind} is not derived from the original value")


class _Sql:
    """The few expressions that differ between PostgreSQL and MySQL/MariaDB."""

    def __init__(self, dialect: Dialect, salt: str) -> None:
        self.dialect = dialect
        self.salt = salt

    def ident(self, name: str) -> str:
        return f'"{name}"' if self.dialect == "postgres" else f"`{name}`"

    def text(self, value: str) -> str:
        if self.dialect == "postgres":
            tag, n = "$hw$", 0
            while (value + tag).find(tag) != len(value):
                n += 1
                tag = f"$hw{n}$"
            return f"{tag}{value}{tag}"
        # hex: immune to sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES) and to the client's own parsing
        return f"CONVERT(X'{value.encode().hex()}' USING utf8mb4)" if value else "''"

    def literal(self, value: str | int | float | bool) -> str:
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int | float):
            return repr(value)
        return self.text(value)

    def md5(self, column: str) -> str:
        col = self.ident(column)
        if self.dialect == "postgres":
            return f"md5({self.text(self.salt)} || {col})" if self.salt else f"md5({col})"
        utf8 = f"CONVERT({col} USING utf8mb4)"
        return f"MD5(CONCAT({self.text(self.salt)}, {utf8}))" if self.salt else f"MD5({utf8})"

    def byte(self, column: str, index: int) -> str:
        """Byte `index` (0-based) of the md5 digest, as an integer."""
        if self.dialect == "postgres":
            return f"get_byte(decode({self.md5(column)}, 'hex'), {index})"
        return f"CAST(CONV(SUBSTRING({self.md5(column)}, {2 * index + 1}, 2), 16, 10) AS UNSIGNED)"

    def pick(self, options: Sequence[str], index_expr: str) -> str:
        items = ", ".join(self.text(o) for o in options)
        if self.dialect == "postgres":
            return f"(ARRAY[{items}])[1 + {index_expr} % {len(options)}]"
        return f"ELT(1 + {index_expr} % {len(options)}, {items})"

    def concat(self, *parts: str) -> str:
        return " || ".join(parts) if self.dialect == "postgres" else f"CONCAT({', '.join(parts)})"

    def expression(self, rule: ColumnRule, column: str) -> str:
        if rule.kind == "null":
            return "NULL"
        if rule.kind == "constant":
            assert rule.value is not None
            return self.literal(rule.value)
        if rule.kind == "hash":
            return self.md5(column)
        if rule.kind == "fake_email":
            return self.concat(self.text("user_"), f"SUBSTRING({self.md5(column)}, 1, {EMAIL_HEX})",
                               self.text(f"@{EMAIL_DOMAIN}"))
        if rule.kind == "fake_name":
            return self.concat(self.pick(FIRST_NAMES, self.byte(column, 0)), self.text(" "),
                               self.pick(LAST_NAMES, self.byte(column, 1)))
        if rule.kind == "fake_phone":
            area = f"(200 + ({self.byte(column, 2)} * 256 + {self.byte(column, 3)}) % 800)"
            line = f"({self.byte(column, 4)} % 100)"
            if self.dialect == "postgres":
                return self.concat(self.text("+1-"), f"{area}::text", self.text("-555-01"),
                                   f"lpad({line}::text, 2, '0')")
            return self.concat(self.text("+1-"), area, self.text("-555-01"), f"LPAD({line}, 2, '0')")
        raise ValueError(rule.kind)


# -- what the target database has -------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnInfo:
    name: str
    data_type: str
    max_length: int | None
    nullable: bool
    is_text: bool


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[ColumnInfo, ...]
    transactional: bool = True
    storage: str = ""

    def column(self, name: str) -> ColumnInfo | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class TableUpdate:
    table: str
    rules: tuple[tuple[str, ColumnRule], ...]  # (column, rule), keep rules left out
    count_sql: str
    update_sql: str


@dataclass(frozen=True)
class AnonymizePlan:
    """The SQL that anonymization runs, one UPDATE per table, as plain data (checked before anything runs)."""

    dialect: Dialect
    updates: tuple[TableUpdate, ...]

    def script(self, timeout: float | None = None) -> str:
        lines = ["START TRANSACTION;" if self.dialect == "mysql" else "BEGIN;"]
        if timeout is not None and self.dialect == "postgres":
            lines.append(f"SET LOCAL statement_timeout = '{int(timeout)}s';")  # the server gives up too
        if self.dialect == "mysql":
            # too long / invalid values are errors, never silent truncation
            lines.append("SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), "
                         "'STRICT_ALL_TABLES');")
        elif self.updates:
            # no writer may slip in between counting and updating
            tables = ", ".join(f'"{u.table}"' for u in self.updates)
            lines.append(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE;")
        for update in self.updates:
            lines += [update.count_sql, update.update_sql]
        lines.append("COMMIT;")
        return "\n".join(lines) + "\n"


def plan_anonymize(rules: AnonymizeRules, tables: Mapping[str, TableInfo], dialect: Dialect, *,
                   salt: str = "", database: str = "the database") -> AnonymizePlan:
    """Check the rules against the database's tables and build the SQL; every problem is reported at once."""
    problems: list[str] = []
    existing = ", ".join(sorted(tables)) or "none"
    for table, columns in rules.tables.items():
        info = tables.get(table)
        if info is None:
            hint = difflib.get_close_matches(table, list(tables), n=1)
            said = f"did you mean `{hint[0]}`? " if hint else ""
            problems.append(f"{rules.where(table)}: tables.{table}: no such table in {database}; {said}"
                            f"tables: {existing}")
            continue
        names = ", ".join(c.name for c in info.columns)
        if any(r.kind != "keep" for r in columns.values()) and not info.transactional:
            problems.append(f"{rules.where(table)}: tables.{table}: stored with {info.storage}, which cannot roll "
                            "back; a failure would leave it half-anonymized (convert it: ALTER TABLE "
                            f"{table} ENGINE=InnoDB)")
        for column, rule in columns.items():
            where = f"{rules.where(table, column)}: tables.{table}.{column}"
            col = info.column(column)
            if col is None:
                hint = difflib.get_close_matches(column, [c.name for c in info.columns], n=1)
                said = f"did you mean `{hint[0]}`? " if hint else ""
                problems.append(f"{where}: no such column in {table}; {said}columns: {names}")
                continue
            if rule.kind in DERIVED and not col.is_text:
                problems.append(f"{where}: {rule.kind} needs a text column; {column} is {col.data_type} "
                                "(use null, {constant: VALUE} or keep)")
            elif rule.kind == "null" and not col.nullable:
                problems.append(f"{where}: {column} is NOT NULL, so `null` cannot apply (use {{constant: VALUE}})")
            need = OUTPUT_LENGTH.get(rule.kind)
            if rule.kind == "constant" and col.is_text:
                need = len(str(rule.value))
            if need is not None and col.is_text and col.max_length is not None and col.max_length < need:
                problems.append(f"{where}: {rule.describe()} writes up to {need} characters; {column} holds "
                                f"{col.max_length}")
    if rules.strict:
        unlisted = [f"{t.name}.{c.name}" for t in sorted(tables.values(), key=lambda t: t.name)
                    for c in t.columns if c.is_text and c.name not in rules.tables.get(t.name, {})]
        if unlisted:
            problems.append(f"{rules.source}: strict: these text columns have no rule: {', '.join(unlisted)}")
    if problems:
        raise ConfigError(f"{rules.source} does not fit {database}: {len(problems)} problem(s)\n"
                          + "\n".join(f"  {p}" for p in problems),
                          "fix the names or rules above (use `keep` for a column that holds nothing personal)")

    sql = _Sql(dialect, salt)
    updates = []
    for table, columns in rules.tables.items():
        changing = tuple((c, r) for c, r in columns.items() if r.kind != "keep")
        if not changing:
            continue
        # fakes keep NULLs, so rows where every such column is NULL need no write
        cond = "" if any(r.kind not in DERIVED for _, r in changing) else \
            " WHERE " + " OR ".join(f"{sql.ident(c)} IS NOT NULL" for c, _ in changing)
        counts = ", ".join("count(*)" if r.kind not in DERIVED else f"count({sql.ident(c)})" for c, r in changing)
        updates.append(TableUpdate(
            table=table, rules=changing,
            count_sql=f"SELECT 'hw-count', {sql.text(table)}, count(*), {counts} FROM {sql.ident(table)}{cond};",
            update_sql=f"UPDATE {sql.ident(table)} SET "
                       + ", ".join(f"{sql.ident(c)} = {sql.expression(r, c)}" for c, r in changing) + f"{cond};"))
    return AnonymizePlan(dialect=dialect, updates=tuple(updates))


# -- running it inside the database container ----------------------------------------------------------------
@dataclass(frozen=True)
class DatabaseTarget:
    """The database to anonymize: its container and how to log in (the password reaches the client by env)."""

    container: str  # name or id
    engine: Engine
    user: str
    database: str
    password: str = field(default="", repr=False)

    @property
    def dialect(self) -> Dialect:
        return "postgres" if self.engine == "postgres" else "mysql"


@dataclass(frozen=True)
class ColumnChange:
    column: str
    rule: str
    values: int  # values rewritten (derived rules leave NULLs alone)


@dataclass(frozen=True)
class TableChange:
    table: str
    rows: int
    columns: tuple[ColumnChange, ...]


@dataclass(frozen=True)
class AnonymizeReport:
    database: str
    tables: tuple[TableChange, ...]
    seconds: float

    def rows(self, table: str) -> int:
        return next((t.rows for t in self.tables if t.table == table), 0)

    def values(self, table: str, column: str) -> int:
        for t in self.tables:
            for c in t.columns:
                if t.table == table and c.column == column:
                    return c.values
        return 0


def refuse_production_target(environment: str) -> None:
    """A clone writes into its target; it must never be production."""
    if environment.strip().lower() in PRODUCTION_NAMES:
        raise HeadwayError(f"refusing to write into {environment}: anonymized clones only go to other environments",
                           "make staging (or another non-production environment) the target; production is only "
                           "ever the source", exit_code=ExitCode.USAGE)


def anonymize(engine: DockerEngine, target: DatabaseTarget, rules: AnonymizeRules, *, environment: str,
              salt: str = "", timeout: float = 3600) -> AnonymizeReport:
    """Apply `rules` inside the target database in one transaction; return what was rewritten."""
    refuse_production_target(environment)
    started = time.monotonic()
    container = _container(engine, target.container)
    client = _Client(container, target)
    tables = client.tables()
    plan = plan_anonymize(rules, tables, target.dialect, salt=salt,
                          database=f"database {target.database} in {container.name}")
    if not plan.updates:
        return AnonymizeReport(target.database, (), time.monotonic() - started)
    out = client.run_script(plan.script(timeout), timeout=timeout, what="anonymization")
    counts: dict[str, list[int]] = {}
    for row in client.rows(out):
        if row and row[0] == "hw-count":
            counts[row[1]] = [int(v) for v in row[2:]]
    changes = []
    for update in plan.updates:
        found = counts.get(update.table)
        if found is None or len(found) != len(update.rules) + 1:
            raise HeadwayError(f"anonymization of {update.table} ran and was committed, but its counts are missing "
                               "from the client's output", "check the output below", details=out[-2000:])
        changes.append(TableChange(update.table, found[0], tuple(
            ColumnChange(c, r.describe(), n) for (c, r), n in zip(update.rules, found[1:], strict=True))))
    return AnonymizeReport(target.database, tuple(changes), time.monotonic() - started)


def _container(engine: DockerEngine, ref: str) -> Container:
    container = engine.get(ref)
    if container is None or not engine.state(container).get("Running"):
        raise HeadwayError(f"database container {ref} is not running",
                           "start the target environment's database first (`headway deploy` starts accessories)",
                           exit_code=ExitCode.NOT_FOUND)
    return container


class _Client:
    """psql or mariadb/mysql inside the database container, with the password in the exec's environment."""

    def __init__(self, container: Container, target: DatabaseTarget) -> None:
        self.container = container
        self.target = target
        self._binary: str | None = None

    def _env(self) -> dict[str, str]:
        if not self.target.password:
            return {}
        key = "PGPASSWORD" if self.target.dialect == "postgres" else "MYSQL_PWD"
        return {key: self.target.password}

    def _argv(self, script_path: str) -> list[str]:
        t = self.target
        if t.dialect == "postgres":
            return ["psql", "-X", "-q", "-A", "-t", "-F", SEP, "-v", "ON_ERROR_STOP=1", "-U", t.user,
                    "-d", t.database, "-f", script_path]
        binary = self.binary()
        # the script arrives on stdin from a file: `source` would not stop at the first error in every version
        return ["sh", "-c", f'exec {binary} --batch --skip-column-names --default-character-set=utf8mb4 '
                            f'-u "$1" -D "$2" < "$3"', "sh", t.user, t.database, script_path]

    def binary(self) -> str:
        if self._binary is None:
            found = _exec(self.container, ["sh", "-c", "command -v mariadb || command -v mysql"], timeout=30)
            name = found.stdout.strip().splitlines()[-1:] if found.exit_code == 0 else []
            if not name:
                raise HeadwayError(f"no mariadb or mysql client in {self.container.name}",
                                   "use an image that ships the client (the official mariadb and mysql ones do)")
            self._binary = name[0]
        return self._binary

    def run_script(self, sql: str, *, timeout: float, what: str) -> str:
        path = f"/tmp/headway-{uuid.uuid4().hex[:12]}.sql"
        _put_file(self.container, path, sql.encode())
        try:
            # `timeout` stops the client inside the container: its connection closes and the transaction rolls back
            result = _exec(self.container, ["timeout", str(max(1, int(timeout))), *self._argv(path)],
                           env=self._env(), timeout=timeout + 60)
        finally:
            _exec(self.container, ["rm", "-f", path], timeout=30)
        if result.timed_out or result.exit_code == 124:
            raise HeadwayError(f"{what} did not finish within {timeout:.0f}s and was stopped; nothing was changed",
                               "retry with a longer timeout")
        if result.exit_code != 0:
            # PostgreSQL's DETAIL lines quote row contents (failing row, duplicate key): data stays out of output
            stderr = "\n".join(ln for ln in result.stderr.splitlines() if not ln.startswith("DETAIL:"))
            errors = [ln for ln in stderr.splitlines() if "ERROR" in ln] or stderr.splitlines()[-1:]
            message = errors[0] if errors else f"exit code {result.exit_code}"
            message = re.sub(r"^psql:/tmp/headway-\w+\.sql:\d+:\s*(ERROR:\s*)?", "", message)
            raise HeadwayError(f"{what} failed in {self.target.database}, nothing was changed (the transaction "
                               f"was rolled back): {message}",
                               "fix the rule for that table or column in the rules file, then run it again",
                               details=stderr[-4000:])
        return result.stdout

    def rows(self, out: str) -> list[list[str]]:
        sep = SEP if self.target.dialect == "postgres" else "\t"
        return [line.split(sep) for line in out.splitlines() if line]

    def tables(self) -> dict[str, TableInfo]:
        if self.target.dialect == "postgres":
            sql = ("SELECT 'hw-col', c.table_name, c.column_name, c.data_type, c.udt_name, "
                   "coalesce(c.character_maximum_length, -1), c.is_nullable, '' "
                   "FROM information_schema.columns c JOIN information_schema.tables t "
                   "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
                   "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
                   "ORDER BY c.table_name, c.ordinal_position;")
        else:
            sql = ("SELECT 'hw-col', c.table_name, c.column_name, c.data_type, c.column_type, "
                   "coalesce(c.character_maximum_length, -1), c.is_nullable, "
                   "concat(coalesce(t.engine, ''), ':', coalesce(t.create_options, '')) "
                   "FROM information_schema.columns c JOIN information_schema.tables t "
                   "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
                   "WHERE c.table_schema = DATABASE() AND t.table_type = 'BASE TABLE' "
                   "ORDER BY c.table_name, c.ordinal_position;")
        out = self.run_script(sql, timeout=120, what="reading the table list")
        columns: dict[str, list[ColumnInfo]] = {}
        storage: dict[str, str] = {}
        for row in self.rows(out):
            if len(row) != 8 or row[0] != "hw-col":
                continue
            _, table, column, data_type, udt, length, nullable, engine_options = row
            kind = data_type.lower()
            is_text = kind in POSTGRES_TEXT or udt.lower() == "citext" if self.target.dialect == "postgres" \
                else kind in MYSQL_TEXT
            max_length = int(length) if int(length) >= 0 else None
            columns.setdefault(table, []).append(ColumnInfo(column, data_type, max_length,
                                                            nullable.upper() == "YES", is_text))
            storage[table] = engine_options
        out_tables = {}
        for table, cols in columns.items():
            engine_name, _, options = storage[table].partition(":")
            transactional = True
            if self.target.dialect == "mysql":
                name = engine_name.lower()
                transactional = name in MYSQL_TRANSACTIONAL and (
                    name != "aria" or "transactional=1" in options.lower())
            out_tables[table] = TableInfo(table, tuple(cols), transactional, engine_name)
        return out_tables


def _exec(container: Container, argv: list[str], *, env: dict[str, str] | None = None, user: str = "",
          timeout: float | None = None) -> ExecResult:
    return exec_split(container, argv, env=env, user=user, timeout=timeout)


def _put_file(container: Container, path: str, data: bytes, mode: int = 0o600) -> None:
    put_file(container, path, data, mode)
