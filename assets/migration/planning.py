"""Planning, pure: from the live state of each column to the steps and SQL that fix it. No database here.

Checks are chosen by the column they constrain (`conkey`), never by their text, and judged one
top-level conjunct at a time: a conjunct over the column alone that refuses a code value, or
spells a value list, is what the code's own list replaces; every other conjunct (other
columns, `length(status) <= 20`, ...) is kept, as a check of its own when the check it sat in
is replaced. A check with no such conjunct is never touched.

The plan is a function of the live state, so an interrupted expand/contract migration is
resumed by planning again: its intermediate states are ordinary inputs.
"""

from __future__ import annotations

from dataclasses import replace

from psycopg import sql

from assets.migration import statements as s
from assets.migration.model import (
    ColumnFix, ColumnState, Plan, Refusal, Retype, Statement, Step,
)
from assets.migration.settings import MigrationSettings

_NEVER_LARGE = 2**62
_DOMAIN_VALIDATE = ("Before PostgreSQL 18, ALTER DOMAIN ... VALIDATE also takes a SHARE lock on the domain's tables:\n"
                    "writes wait for its scan (they do not fail).")


class _Refused(Exception):
    def __init__(self, reason: str, manual_sql: str = ""):
        super().__init__(reason)
        self.refusal = Refusal(reason, manual_sql)


def plan_from(schema: str, states: list[ColumnState], settings: MigrationSettings,
              absent: list[str] = ()) -> Plan:
    """The steps and SQL for the columns' states; a column that cannot be fixed here becomes a refusal."""
    refusals = [Refusal(f"{name} is missing (the contract names it): create it first, this migration only "
                        "replaces CHECK constraints and widens types") for name in absent]
    fixes = []
    for state in states:
        try:
            fix = fix_for(schema, state, settings)
        except _Refused as refused:
            refusals.append(refused.refusal)
            continue
        if fix:
            fixes.append(fix)
    steps = []
    additions = [(f.enum, label) for f in fixes for label in f.enum_additions]
    if additions:
        steps.append(_enum_step(schema, fixes, dict.fromkeys(additions), settings))
    small = [f for f in fixes if not f.large]
    if small:
        steps.append(_replace_step(schema, small, settings))
    for fix in (f for f in fixes if f.large):
        steps += _expand_contract_steps(schema, fix, settings)
    return Plan(schema, tuple(fixes), tuple(steps), tuple(refusals), settings)


def fix_for(schema: str, state: ColumnState, settings: MigrationSettings) -> ColumnFix | None:
    where = f"{schema}.{state.table}.{state.column.name}"
    codes = state.code_values
    large = state.rows >= settings.large_table_rows
    domain_refuses = {v for j in state.checks if j.on_domain for v in j.rejected}
    retype, enum_additions = None, ()
    if state.enum:
        missing = tuple(v for v in codes if v not in state.enum.labels)
        if missing and state.enum.shared_with:
            # ADD VALUE would change the type for the columns outside the contract: this column leaves it.
            retype = Retype("text", True, f"{state.enum.name} is also the type of {', '.join(state.enum.shared_with)}"
                            f", which must not gain {', '.join(missing)}:\nthis column becomes text, limited by "
                            "the check below (a rewrite, under the lock: small tables only).",
                            state.views, ())
        else:
            enum_additions = missing
    elif state.type_refuses and state.varchar_length is not None \
            and max(map(len, codes)) > state.varchar_length and not state.domain:
        retype = Retype(f"character varying({max(map(len, codes))})", False,
                        f"character varying({state.varchar_length}) refuses the longer code values; a longer "
                        "varchar changes only the catalog\n(no rewrite), under the lock.", state.views, ())
    elif refused := [v for v in state.type_refuses if v not in domain_refuses]:
        raise _Refused(f"{where} ({state.column.type}) refuses {_quoted(refused)} in its type itself, "
                       "which this migration cannot change: this needs a hand-written migration")
    if retype and retype.rewrite and large:
        manual = plan_from(schema, [state], replace(settings, large_table_rows=_NEVER_LARGE)).sql()
        raise _Refused(f"{where}: {retype.why.splitlines()[0]}; changing its type rewrites all "
                       f"{state.rows} rows under an ACCESS EXCLUSIVE lock, so it is not run on a large table",
                       manual)
    if retype and any(v.unrestorable for v in retype.views):
        raise _Refused(f"{where}: its type must change, and views that dropping and creating again would not "
                       f"restore read it (materialized, or with rules or triggers): "
                       f"{', '.join(v.name for v in retype.views if v.unrestorable)}; drop them first")

    legacy = {v: n for v, n in sorted(state.value_counts.items()) if v not in codes}
    unmapped = [v for v in legacy if v not in settings.remap]
    if unmapped:
        raise _Refused(f"{where}: " + ", ".join(f"{legacy[v]} row(s) hold {v!r}" for v in unmapped)
                       + " with no mapping in the remap: add one (or fix those rows) first")
    wrong = {v: settings.remap[v] for v in legacy if settings.remap[v] not in codes}
    if wrong:
        raise _Refused(f"{where}: the remap maps " + ", ".join(f"{v!r} to {t!r}" for v, t in wrong.items())
                       + f", which the code never writes ({', '.join(codes)})")

    on_domain = any(j.on_domain and j.limits for j in state.checks)
    if on_domain and state.domain.shared_with and not settings.allow_shared_domain:
        manual = plan_from(schema, [state], replace(settings, allow_shared_domain=True)).sql()
        raise _Refused(f"{where}: its domain {state.domain.name} limits its values and is shared with "
                       f"{', '.join(state.domain.shared_with)}, for which replacing its constraint changes too: "
                       "set allow_shared_domain to replace it anyway", manual)
    exact = [j for j in state.checks if j.single and j.on_domain == on_domain and not j.rejected
             and j.allowed is not None and set(j.allowed) == set(codes)]
    final = next((j for j in exact if j.check.validated or large), None)
    stale = [j for j in state.checks if j is not final and j.limits]
    if not (stale or legacy or enum_additions or retype) and final is not None and final.check.validated:
        return None
    # On the large path, checks that accept every code value wait until the final check is validated; not when
    # the type changes, as ALTER TYPE would scan the table to check them again, under its lock.
    replaced = [j for j in stale if not large or j.rejected or j.survivor_sql or (retype and not j.on_domain)]
    retired = [j for j in stale if j not in replaced]
    table_names = set(state.constraint_names) - {j.check.name for j in replaced if not j.on_domain}
    domain_names = set(state.domain.constraint_names if state.domain else ()) - {
        j.check.name for j in replaced if j.on_domain}
    survivors, guarded_survivors = [], set()
    for j in replaced:
        if j.survivor_sql:
            names = domain_names if j.on_domain else table_names
            others = [c for c in j.check.columns if c != state.column.name]
            stem = j.check.name if j.on_domain else f"{state.table}_{'_'.join(others or j.check.columns)}"
            name = s.free_name(stem, "rest" if j.on_domain else "check", names)
            names.add(name)
            survivors.append((name, j.survivor_sql, j.on_domain, j.check.validated))
            if not j.on_domain and j.survivor_reads(state.column.name):
                guarded_survivors.add(name)
    transitional = {}
    for holder in sorted({j.on_domain for j in replaced}) if large else ():
        names = domain_names if holder else table_names
        stem = state.domain.name.split(".")[-1].strip('"') if holder else f"{state.table}_{state.column.name}"
        transitional[holder] = s.free_name(stem, "transitional_check", names)
        names.add(transitional[holder])
    if final is None:
        names = domain_names if on_domain else table_names
        stem = state.domain.name.split(".")[-1].strip('"') if on_domain else f"{state.table}_{state.column.name}"
        final_name = s.free_name(stem, "check", names)
    else:
        final_name = final.check.name
    table_checks = [j for j in state.checks if not j.on_domain]
    if retype and large:  # validated checks on the column are scanned again by ALTER TYPE, under its lock
        revalidated = tuple(j.check for j in table_checks if j.check.validated and j not in stale)
        retype = replace(retype, revalidated=revalidated)
    return ColumnFix(
        table=state.table,
        column=state.column.name,
        code_values=codes,
        large=large,
        rows=state.rows,
        legacy_counts=legacy,
        remap={v: t for v, t in settings.remap.items() if v in legacy},
        replaced=tuple(replaced),
        survivors=tuple(survivors),
        survivors_on_column=frozenset(guarded_survivors),
        retired=tuple(retired),
        kept=tuple(j.check.name for j in state.checks if j is not final and j not in stale),
        final=final_name,
        final_on_domain=on_domain,
        final_exists=final is not None,
        final_validated=bool(final and final.check.validated),
        transitional=transitional,
        checks_before=frozenset((j.check.name, j.check.validated) for j in table_checks),
        domain=state.domain.name if state.domain else None,
        enum=state.enum.name if state.enum and not retype else None,
        enum_additions=enum_additions,
        retype=retype,
    )


def _enum_step(schema: str, fixes: list[ColumnFix], additions: dict, settings: MigrationSettings) -> Step:
    """Enum labels cannot be dropped, so the legacy ones stay in the type and the column's check refuses them:
    no table rewrite and no lock held across a scan, where converting the column to text would rewrite it under
    ACCESS EXCLUSIVE and fail on every view over it."""
    return Step(
        kind="enum",
        title="add " + ", ".join(f"{label} to {enum}" for enum, label in additions) + ", committed first",
        prelude=s.prelude(settings, settings.statement_timeout_ms),
        lock=None,
        body=tuple(s.add_enum_value(enum, label) for enum, label in additions),
        expects=tuple((f.table, f.column, f.checks_before) for f in fixes),
    )


def _replace_step(schema: str, fixes: list[ColumnFix], settings: MigrationSettings) -> Step:
    """Small tables: drop, retype, remap, add and comment in one transaction (all columns at once)."""
    body = []
    for fix in fixes:
        views = fix.retype.views if fix.retype else ()
        body += [s.drop_view(v) for v in reversed(views)]
        for j in fix.replaced:
            body.append(s.drop(s.holder(schema, fix, j.on_domain), j.check.name,
                               "it is replaced below, in this same transaction"))
        if fix.retype:
            body.append(s.retype(schema, fix))
        if fix.remap:
            body.append(s.remap(schema, fix, batch=None))
        why = (f"A small table (under {settings.large_table_rows} rows): validating under the lock already held\n"
               "is shorter than a second transaction, and keeps the whole change atomic.\n"
               "squawk-ignore constraint-missing-not-valid")
        for name, expression, on_domain, validated in fix.survivors:
            body.append(s.add_check(s.holder(schema, fix, on_domain), name, expression, not_valid=not validated,
                                    why="What the replaced check also guarded, kept as it was.\n" + why,
                                    on_domain=on_domain))
        if not fix.final_exists:
            body.append(s.add_check(s.holder(schema, fix, fix.final_on_domain), fix.final,
                                    s.code_list(s.value_ref(fix, fix.final_on_domain), fix.code_values),
                                    not_valid=False, why=why, on_domain=fix.final_on_domain))
            body.append(s.comment(schema, fix))
        body += [Statement(text) for v in views for text in v.create]
    return Step(
        kind="replace",
        title="replace " + ", ".join(f"{schema}.{f.table}.{f.column}" for f in fixes) + " in one transaction",
        prelude=s.prelude(settings, settings.statement_timeout_ms),
        lock=s.lock([f.table for f in fixes], schema, "ACCESS EXCLUSIVE"),
        body=tuple(body),
        expects=tuple((f.table, f.column, f.checks_before) for f in fixes),
    )


def _expand_contract_steps(schema: str, fix: ColumnFix, settings: MigrationSettings) -> list[Step]:
    """Large tables: no transaction holds a lock that blocks reads or writes across a table scan.

    Stopping between steps leaves a resumable state that accepts every old and new value.
    """
    where = f"{schema}.{fix.table}.{fix.column}"
    checks = set(fix.checks_before)  # the table's checks on the column as each step finds them (its guard)
    on_column = {n for n, _ in checks} | set(fix.survivors_on_column) | {fix.transitional.get(False), fix.final}
    steps = []

    def add(kind: str, title: str, body: list[Statement], *, lock_mode: str | None = "ACCESS EXCLUSIVE",
            timeout_ms: int = settings.statement_timeout_ms, drops=frozenset(), adds=None, **batching) -> None:
        steps.append(Step(
            kind, f"{where}: {title}", s.prelude(settings, timeout_ms),
            s.lock([fix.table], schema, lock_mode) if lock_mode else None,
            tuple(body), ((fix.table, fix.column, frozenset(checks)),), **batching,
        ))
        checks.difference_update({c for c in checks if c[0] in drops})
        checks.update((n, v) for n, v in (adds or {}).items() if n in on_column)

    def table_only(names):
        return {n for n, on_domain in names if not on_domain}

    if fix.replaced:
        body = []
        for holder, name in fix.transitional.items():
            # The transitional check allows what the replaced checks allowed (in their own words) or a code value.
            old = " AND ".join(f"({j.limiting_sql})" for j in fix.replaced if j.on_domain == holder)
            ref = s.value_ref(fix, holder)
            body += [s.drop(s.holder(schema, fix, holder), j.check.name, f"{name} below allows every value it allowed")
                     for j in fix.replaced if j.on_domain == holder]
            body.append(s.add_check(s.holder(schema, fix, holder), name,
                                    sql.SQL("({}) OR {}").format(sql.SQL(old), s.code_list(ref, fix.code_values)),
                                    not_valid=True, on_domain=holder))
        body += [s.add_check(s.holder(schema, fix, on_domain), name, expression, not_valid=True, on_domain=on_domain,
                             why="What the replaced check also guarded, kept as it was (validated below).")
                 for name, expression, on_domain, _ in fix.survivors]
        add("expand", "accept old and new values (" + ", ".join(fix.transitional.values()) + ", NOT VALID)", body,
            drops=table_only((j.check.name, j.on_domain) for j in fix.replaced),
            adds={n: False for n in table_only((n, d) for d, n in fix.transitional.items())}
            | {n: False for n, _, d, _ in fix.survivors if not d})
    if fix.retype:
        views = fix.retype.views
        body = [s.drop_view(v) for v in reversed(views)]
        for check in fix.retype.revalidated:
            alter = s.holder(schema, fix, False)
            body += [s.drop(alter, check.name, "ALTER TYPE would scan the table to check it again, under its lock; "
                                               "it is added back at once, NOT VALID, and validated below"),
                     Statement(sql.SQL("{} ADD CONSTRAINT {} ").format(alter, sql.Identifier(check.name))
                               .as_string(None) + check.definition + " NOT VALID")]
        body += [s.retype(schema, fix), *(Statement(text) for v in views for text in v.create)]
        add("widen", f"retype to {fix.retype.to}", body,
            drops={c.name for c in fix.retype.revalidated}, adds={c.name: False for c in fix.retype.revalidated})
    if fix.remap:
        add("remap", f"remap legacy values in batches of {settings.batch_size}",
            [s.remap(schema, fix, batch=settings.batch_size)], lock_mode=None, batched=True,
            remaining_sql=s.exists(schema, fix.table, fix.column, fix.remap))
    if not fix.final_exists:
        add("contract", f"add {fix.final} (code values only, NOT VALID)",
            [s.add_check(s.holder(schema, fix, fix.final_on_domain), fix.final,
                         s.code_list(s.value_ref(fix, fix.final_on_domain), fix.code_values), not_valid=True,
                         on_domain=fix.final_on_domain),
             s.comment(schema, fix)],
            adds={} if fix.final_on_domain else {fix.final: False})
    to_validate = ([(fix.final, fix.final_on_domain)] if not fix.final_validated else []) + [
        (n, d) for n, _, d, validated in fix.survivors if validated] + [
        (c.name, False) for c in (fix.retype.revalidated if fix.retype else ())]
    if to_validate:
        body = [replace(s.validate(s.holder(schema, fix, d), n), why=_DOMAIN_VALIDATE if d else "")
                for n, d in to_validate]
        add("validate", f"validate {', '.join(n for n, _ in to_validate)} (reads and writes go on)", body,
            lock_mode="SHARE UPDATE EXCLUSIVE", timeout_ms=settings.validate_timeout_ms,
            drops=table_only(to_validate), adds={n: True for n in table_only(to_validate)})
    retired = [(j.check.name, j.on_domain) for j in fix.retired] + [(n, d) for d, n in fix.transitional.items()]
    if retired:
        add("retire", "drop " + ", ".join(n for n, _ in retired),
            [s.drop(s.holder(schema, fix, d), n, f"{fix.final} (validated) accepts exactly the code values")
             for n, d in retired], drops=table_only(retired))
    return steps


def _quoted(values) -> str:
    return ", ".join(repr(v) for v in values)
