"""Planning is pure: from column states built here by hand, no database, to the steps and SQL it plans."""

from __future__ import annotations

from assets.audit.catalog import CheckConstraint, LiveColumn
from assets.migration.model import ColumnState, Conjunct, DependentView, Domain, EnumType, JudgedCheck
from assets.migration.planning import plan_from
from assets.migration.settings import MigrationSettings

CODES = ("queued", "processing", "paused")
LEGACY_ROWS = {"pending": 4, "running": 3, "paused": 2}
SMALL, LARGE = MigrationSettings(), MigrationSettings(large_table_rows=5)


def judged(name: str, *conjuncts: Conjunct, columns=("status",), rejected=(), allowed=None, on_domain=False,
           validated=True) -> JudgedCheck:
    definition = "CHECK (" + " AND ".join(f"({c.sql})" for c in conjuncts) + ")"
    return JudgedCheck(CheckConstraint(name, definition, columns, validated), on_domain, columns == ("status",),
                       rejected, allowed, conjuncts)


LEGACY_LIST = Conjunct("status IN ('pending', 'running', 'paused')", frozenset({"status"}), True, True)
LENGTH = Conjunct("length(status) <= 20", frozenset({"status"}), True, False)
TOTALS = Conjunct("total >= 0", frozenset({"total"}), False, False)


def state(checks=(), column_type="text", **kwargs) -> ColumnState:
    return ColumnState(
        table="t", column=LiveColumn("status", column_type, "text", True, None), code_values=CODES,
        checks=tuple(checks), type_refuses=kwargs.pop("type_refuses", ()), value_counts=dict(LEGACY_ROWS),
        rows=sum(LEGACY_ROWS.values()), constraint_names=frozenset(c.check.name for c in checks), **kwargs)


def test_a_value_list_is_replaced_and_the_column_alone_checks_kept():
    plan = plan_from("public", [state([judged("t_status_check", LEGACY_LIST, rejected=("queued", "processing"),
                                              allowed=("pending", "running", "paused")),
                                       judged("t_length", LENGTH)])], SMALL)
    (fix,) = plan.fixes
    assert [j.check.name for j in fix.replaced] == ["t_status_check"] and fix.kept == ("t_length",)
    assert fix.remap == {"pending": "queued", "running": "processing"} and fix.final == "t_status_check"
    assert [s.kind for s in plan.steps] == ["replace"]
    body = [st.sql for st in plan.steps[0].body]
    assert body[0] == 'ALTER TABLE "public"."t" DROP CONSTRAINT "t_status_check"'
    assert body[2] == ('ALTER TABLE "public"."t" ADD CONSTRAINT "t_status_check" CHECK ("status" IN '
                       "('queued', 'processing', 'paused'))")


def test_a_multi_column_check_is_split_into_its_other_conjuncts_and_the_code_list():
    check = judged("t_guard", LEGACY_LIST, TOTALS, columns=("status", "total"), rejected=("queued", "processing"))
    for settings in (SMALL, LARGE):
        plan = plan_from("public", [state([check])], settings)
        (fix,) = plan.fixes
        assert fix.survivors == (("t_total_check", "(total >= 0)", False, True),)
        text = plan.sql()
        assert 'ADD CONSTRAINT "t_total_check" CHECK ((total >= 0))' in text and 'DROP CONSTRAINT "t_guard"' in text
    assert [s.kind for s in plan.steps] == ["expand", "remap", "contract", "validate", "retire"]
    assert 'VALIDATE CONSTRAINT "t_total_check"' in plan.steps[3].sql(4)


def test_an_enum_gains_its_labels_in_a_transaction_of_their_own():
    enum = EnumType("public.s", ("pending", "running", "paused"), ())
    plan = plan_from("public", [state(column_type="s", enum=enum, type_refuses=("queued", "processing"))], SMALL)
    assert [s.kind for s in plan.steps] == ["enum", "replace"]
    assert [st.sql for st in plan.steps[0].body] == ["ALTER TYPE public.s ADD VALUE IF NOT EXISTS 'queued'",
                                                     "ALTER TYPE public.s ADD VALUE IF NOT EXISTS 'processing'"]
    assert "::public.s" in plan.steps[1].body[0].sql  # the remap casts its text to the enum


def test_a_shared_enum_retypes_the_column_on_a_small_table_and_is_refused_with_its_sql_on_a_large_one():
    enum = EnumType("public.s", ("pending", "running", "paused"), ("public.other.status",))
    column = state(column_type="s", enum=enum, type_refuses=("queued", "processing"))
    small = plan_from("public", [column], SMALL)
    assert [s.kind for s in small.steps] == ["replace"] and small.fixes[0].retype.to == "text"
    large = plan_from("public", [column], LARGE)
    assert not large.steps and "public.other.status" in large.errors[0]
    assert 'ALTER COLUMN "status" TYPE text USING "status"::text' in large.sql()


def test_a_too_short_varchar_is_widened_and_its_views_created_again():
    view = DependentView("public.v", False, ("CREATE VIEW public.v AS SELECT t.status FROM public.t",
                                             'ALTER VIEW public.v OWNER TO "app"'))
    check = judged("t_length", LENGTH)
    wide_list = judged("t_list", Conjunct("status IN ('pending', 'running', 'queued', 'processing', 'paused')",
                                          frozenset({"status"}), True, True), allowed=("pending", "running", *CODES))
    column = state([check, wide_list], column_type="character varying(9)", varchar_length=9,
                   type_refuses=("processing",), views=(view,))
    plan = plan_from("public", [column], LARGE)
    assert [s.kind for s in plan.steps] == ["expand", "widen", "remap", "contract", "validate", "retire"]
    assert [j.check.name for j in plan.fixes[0].replaced] == ["t_list"]  # dropped before ALTER TYPE would scan it
    widen = [st.sql for st in plan.steps[1].body]
    assert widen[0] == "DROP VIEW public.v" and widen[-2:] == list(view.create)
    assert 'ALTER COLUMN "status" TYPE character varying(10)' in widen[3]
    assert widen[1:3] == ['ALTER TABLE "public"."t" DROP CONSTRAINT "t_length"',  # so ALTER TYPE scans nothing
                          f'ALTER TABLE "public"."t" ADD CONSTRAINT "t_length" {check.check.definition} NOT VALID']


def test_a_shared_domain_is_refused_unless_allowed():
    domain = Domain("public.s", "text", ("public.other.kind",), frozenset({"s_check"}))
    check = judged("s_check", LEGACY_LIST, rejected=("queued", "processing"), on_domain=True)
    column = state([check], column_type="s", domain=domain, type_refuses=("queued", "processing"))
    refused = plan_from("public", [column], SMALL)
    assert not refused.steps and "shared with public.other.kind" in refused.errors[0]
    allowed = plan_from("public", [column], MigrationSettings(allow_shared_domain=True))
    assert 'ALTER DOMAIN public.s ADD CONSTRAINT "s_check" CHECK (VALUE IN (' in allowed.sql()


def test_an_unmapped_legacy_value_is_refused_naming_it():
    plan = plan_from("public", [state()], MigrationSettings(remap={"pending": "queued"}))
    assert plan.errors == ("public.t.status: 3 row(s) hold 'running' with no mapping in the remap: add one "
                           "(or fix those rows) first",)
