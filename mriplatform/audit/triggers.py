"""Database triggers that make a table append-only (used by migrations).

The models and querysets already refuse changes; these triggers make the database itself
refuse UPDATE and DELETE, whoever issues the statement. TRUNCATE (a table owner's
maintenance operation, used by test database flushes) is not blocked.
"""

from __future__ import annotations

from django.db import migrations


def append_only(table: str, prefix: str, what: str) -> migrations.RunPython:
    """A migration operation adding (and on reverse removing) the triggers for ``table``.

    prefix: unique name prefix for the trigger objects; what: the subject of the error
    message ("audit events", "answer history").
    """
    postgres_forward = f"""
CREATE OR REPLACE FUNCTION {prefix}_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{what} append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER {prefix}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {prefix}_refuse_change();
"""
    postgres_reverse = f"""
DROP TRIGGER IF EXISTS {prefix}_append_only ON {table};
DROP FUNCTION IF EXISTS {prefix}_refuse_change();
"""
    sqlite_forward = [
        f"""CREATE TRIGGER {prefix}_no_{op.lower()} BEFORE {op} ON {table}
        BEGIN SELECT RAISE(ABORT, '{what} append-only: {op} refused'); END;"""
        for op in ("UPDATE", "DELETE")
    ]
    sqlite_reverse = [f"DROP TRIGGER IF EXISTS {prefix}_no_{op};" for op in ("update", "delete")]

    def forward(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(postgres_forward, params=None)
        elif vendor == "sqlite":
            for statement in sqlite_forward:
                schema_editor.execute(statement)
        else:
            raise RuntimeError(f"no append-only trigger for database vendor {vendor!r}")

    def reverse(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(postgres_reverse, params=None)
        elif vendor == "sqlite":
            for statement in sqlite_reverse:
                schema_editor.execute(statement)

    return migrations.RunPython(forward, reverse)
