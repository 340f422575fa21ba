"""anonymize.yml: loading with file:line errors, deterministic fakes, and the SQL plan checked against a schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from headway.data.anonymize import (
    OUTPUT_LENGTH,
    ColumnInfo,
    TableInfo,
    fake_value,
    load_rules,
    parse_rules,
    plan_anonymize,
    refuse_production_target,
)
from headway.errors import ConfigError, ExitCode, HeadwayError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "anonymize"


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_rules(text, "anonymize.yml")
    return str(info.value)


def text_col(name: str, length: int | None = None, nullable: bool = True) -> ColumnInfo:
    return ColumnInfo(name, "character varying" if length else "text", length, nullable, True)


SCHEMA = {
    "users": TableInfo("users", (
        ColumnInfo("id", "integer", None, False, False), text_col("email", 255, nullable=False), text_col("name"),
        text_col("phone", 32), text_col("password_hash", nullable=False), text_col("notes"), text_col("plan"),
        ColumnInfo("created_at", "timestamp without time zone", None, False, False))),
    "orders": TableInfo("orders", (
        ColumnInfo("id", "integer", None, False, False), text_col("shipping_address"), text_col("note"),
        ColumnInfo("total", "numeric", None, False, False))),
}


# -- the file ----------------------------------------------------------------------------------------------
def test_the_example_file_loads_with_line_numbers() -> None:
    rules = load_rules(FIXTURES / "shop.yml")
    users = rules.tables["users"]
    assert [(c, r.kind) for c, r in users.items()] == [
        ("email", "fake_email"), ("name", "fake_name"), ("phone", "fake_phone"), ("password_hash", "constant"),
        ("notes", "null"), ("plan", "keep")]
    assert users["password_hash"].value == "!disabled"
    assert rules.tables["orders"]["shipping_address"].kind == "hash"
    assert rules.default == "keep" and rules.strict is False
    assert rules.where("users", "email") == f"{FIXTURES / 'shop.yml'}:4"
    assert rules.where("orders") == f"{FIXTURES / 'shop.yml'}:10"


@pytest.mark.parametrize(("text", "expected"), [
    ("tables:\n  users:\n    email: fake_mail\n",
     "anonymize.yml:3: tables.users.email: unknown rule 'fake_mail'; did you mean `fake_email`?"),
    ("tables:\n  users:\n    email: scramble\n", "rules: fake_email, fake_name, fake_phone, hash, null, keep, "
                                                   "{constant: VALUE}"),
    ("tables:\n  users:\n    pw: constant\n", 'anonymize.yml:3: tables.users.pw: give the value: {constant: "..."}'),
    ("tables:\n  users:\n    pw: {constant: x, also: y}\n", "a mapping rule is {constant: VALUE}; found also"),
    ("tables:\n  users:\n    pw: {value: x}\n", "a mapping rule is {constant: VALUE}; found value"),
    ("tables:\n  users:\n    pw: {constant: null}\n", "write `null` instead"),
    ("tables:\n  users:\n    pw: {constant: [1]}\n", "a constant is a string, number or boolean"),
    ("tables:\n  users:\n    pw: [keep]\n", "expected a rule name or {constant: VALUE}, not list"),
    ("tables:\n  users:\n    e-mail: keep\n", "anonymize.yml:3: tables.users.e-mail: a table or column name"),
    ("tables:\n  users:\n    email: keep\ndefualt: keep\n",
     "anonymize.yml:4: defualt: unknown key; did you mean `default`?"),
    ("default: hash\n", "anonymize.yml:1: default: only `keep` is supported"),
    ("strict: perhaps\n", "anonymize.yml:1: strict:"),
    ("tables:\n  users: [email]\n", "anonymize.yml:2: tables.users:"),
    ("tables:\n  users:\n    email: fake_email\n   name: x\n", "invalid YAML"),
    ("- users\n", "expected a mapping at the top"),
])
def test_errors_name_file_line_key_and_what_is_expected(text: str, expected: str) -> None:
    message = problems(text)
    assert expected in message
    assert "fix:" in message


def test_all_problems_are_reported_at_once() -> None:
    message = problems("tables:\n  users:\n    email: fake_mail\n    name: fake_nam\nstrikt: true\n")
    assert "3 problem(s)" in message
    assert ":3: tables.users.email" in message and ":4: tables.users.name" in message and ":5: strikt" in message


def test_null_rule_may_be_written_as_yaml_null_or_the_word() -> None:
    rules = parse_rules("tables:\n  users:\n    a: null\n    b: ~\n    c:\n    d: 'null'\n")
    assert {r.kind for r in rules.tables["users"].values()} == {"null"}


# -- fakes ------------------------------------------------------------------------------------------------
def test_fakes_are_deterministic_well_formed_and_keep_null() -> None:
    email = fake_value("fake_email", "ada@example.com")
    assert email == fake_value("fake_email", "ada@example.com")
    assert re.fullmatch(r"user_[0-9a-f]{20}@example\.invalid", email or "")
    assert fake_value("hash", "x") == "9dd4e461268c8034f5c8564e155c67a6"  # md5("x")
    assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", fake_value("fake_name", "Ada Lovelace") or "")
    assert re.fullmatch(r"\+1-[2-9]\d\d-555-01\d\d", fake_value("fake_phone", "+44 20 7946 0000") or "")
    for kind in ("fake_email", "fake_name", "fake_phone", "hash"):
        assert fake_value(kind, None) is None
        assert len(fake_value(kind, "a rather long original value " * 10) or "") <= OUTPUT_LENGTH[kind]
    assert fake_value("fake_email", "ada@example.com", salt="s3") != email  # a salt gives another mapping


def test_distinct_emails_stay_distinct() -> None:
    originals = [f"person{i}@corp.example.com" for i in range(100_000)]
    assert len({fake_value("fake_email", e) for e in originals}) == len(originals)


# -- the plan --------------------------------------------------------------------------------------------
def test_one_set_based_update_per_table_with_only_the_listed_columns() -> None:
    plan = plan_anonymize(load_rules(FIXTURES / "shop.yml"), SCHEMA, "postgres")
    assert [u.table for u in plan.updates] == ["users", "orders"]
    users, orders = plan.updates
    assert users.update_sql.startswith('UPDATE "users" SET "email" = ')
    assert [c for c, _ in users.rules] == ["email", "name", "phone", "password_hash", "notes"]  # keep: left out
    assert '"plan"' not in users.update_sql and "created_at" not in users.update_sql
    assert "WHERE" not in users.update_sql  # constant/null rules touch every row
    assert orders.update_sql == ('UPDATE "orders" SET "shipping_address" = md5("shipping_address") '
                                 'WHERE "shipping_address" IS NOT NULL;')
    script = plan.script()
    assert script.startswith("BEGIN;\nLOCK TABLE \"users\", \"orders\" IN SHARE ROW EXCLUSIVE MODE;\n")
    assert script.rstrip().endswith("COMMIT;")


def test_mysql_plan_quotes_with_backticks_and_hex_literals() -> None:
    rules = parse_rules("tables:\n  users:\n    notes: {constant: \"it's a \\\\ test\"}\n    email: fake_email\n")
    plan = plan_anonymize(rules, SCHEMA, "mysql", salt="pepper")
    sql = plan.updates[0].update_sql
    assert "`notes` = CONVERT(X'" + b"it's a \\ test".hex() + "' USING utf8mb4)" in sql
    assert "MD5(CONCAT(CONVERT(X'" + b"pepper".hex() + "' USING utf8mb4), CONVERT(`email` USING utf8mb4))" in sql
    assert plan.script().startswith("START TRANSACTION;\nSET SESSION sql_mode")


def test_postgres_literals_survive_any_content() -> None:
    rules = parse_rules("tables:\n  users:\n    notes: {constant: 'a $hw$ b $hw1$'}\n")
    sql = plan_anonymize(rules, SCHEMA, "postgres").updates[0].update_sql
    assert "$hw2$a $hw$ b $hw1$$hw2$" in sql


def test_a_table_with_only_keep_rules_is_not_touched() -> None:
    rules = parse_rules("tables:\n  users:\n    plan: keep\n")
    assert plan_anonymize(rules, SCHEMA, "postgres").updates == ()


def test_unknown_names_are_refused_with_what_exists() -> None:
    with pytest.raises(ConfigError) as info:
        plan_anonymize(load_rules(FIXTURES / "unknown.yml"), SCHEMA, "postgres", database="database shop")
    message = str(info.value)
    path = FIXTURES / "unknown.yml"
    assert f"{path}:3: tables.users.emial: no such column in users; did you mean `email`? columns: id, email, " \
           "name, phone, password_hash, notes, plan, created_at" in message
    assert f"{path}:5: tables.customers: no such table in database shop;" in message
    assert "tables: orders, users" in message
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(("rule", "expected"), [
    ("tables:\n  users:\n    created_at: fake_name\n",
     "fake_name needs a text column; created_at is timestamp without time zone"),
    ("tables:\n  users:\n    email: null\n", "email is NOT NULL, so `null` cannot apply"),
    ("tables:\n  users:\n    phone: fake_email\n", "fake_email writes up to 41 characters; phone holds 32"),
    ("tables:\n  users:\n    phone: {constant: '" + "9" * 40 + "'}\n", "writes up to 40 characters; phone holds 32"),
])
def test_rules_that_cannot_fit_the_column_are_refused_before_anything_runs(rule: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_anonymize(parse_rules(rule), SCHEMA, "postgres")
    assert expected in str(info.value)


def test_constants_fit_any_column_type() -> None:
    rules = parse_rules("tables:\n  orders:\n    total: {constant: 0}\n  users:\n    created_at: {constant: "
                        "'2000-01-01'}\n")
    sql = "\n".join(u.update_sql for u in plan_anonymize(rules, SCHEMA, "postgres").updates)
    assert '"total" = 0' in sql and '"created_at" = $hw$2000-01-01$hw$' in sql


def test_strict_lists_every_unnamed_text_column() -> None:
    with pytest.raises(ConfigError) as info:
        plan_anonymize(load_rules(FIXTURES / "strict.yml"), SCHEMA, "postgres")
    assert "these text columns have no rule: orders.shipping_address, orders.note, users.phone, " \
           "users.password_hash, users.notes, users.plan" in str(info.value)


def test_tables_that_cannot_roll_back_are_refused() -> None:
    schema = {"users": TableInfo("users", SCHEMA["users"].columns, transactional=False, storage="MyISAM")}
    with pytest.raises(ConfigError) as info:
        plan_anonymize(parse_rules("tables:\n  users:\n    email: fake_email\n"), schema, "mysql")
    assert "stored with MyISAM, which cannot roll back" in str(info.value)


@pytest.mark.parametrize("name", ["production", "PRODUCTION", " prod "])
def test_production_is_refused(name: str) -> None:
    with pytest.raises(HeadwayError) as info:
        refuse_production_target(name)
    assert info.value.exit_code == ExitCode.USAGE and info.value.fix


def test_other_environments_are_allowed() -> None:
    for name in ("staging", "qa", "preproduction"):
        refuse_production_target(name)


def test_postgres_gives_up_with_the_client() -> None:
    plan = plan_anonymize(load_rules(FIXTURES / "shop.yml"), SCHEMA, "postgres")
    assert "SET LOCAL statement_timeout = '600s';" in plan.script(timeout=600)
