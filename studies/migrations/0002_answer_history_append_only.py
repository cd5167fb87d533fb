"""Database triggers that refuse UPDATE and DELETE on answer-history rows.

Same scheme as ``audit`` migration 0002: the model and queryset already refuse changes;
these make the database itself refuse them. TRUNCATE (test flushes) is not blocked.
"""

from django.db import migrations

TABLE = "studies_answerhistory"

POSTGRES_FORWARD = f"""
CREATE OR REPLACE FUNCTION studies_answerhistory_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'answer history is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER studies_answerhistory_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION studies_answerhistory_refuse_change();
"""
POSTGRES_REVERSE = f"""
DROP TRIGGER IF EXISTS studies_answerhistory_append_only ON {TABLE};
DROP FUNCTION IF EXISTS studies_answerhistory_refuse_change();
"""
SQLITE_FORWARD = [
    f"""CREATE TRIGGER studies_answerhistory_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'answer history is append-only: UPDATE refused'); END;""",
    f"""CREATE TRIGGER studies_answerhistory_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'answer history is append-only: DELETE refused'); END;""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS studies_answerhistory_no_update;",
    "DROP TRIGGER IF EXISTS studies_answerhistory_no_delete;",
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"no append-only trigger for database vendor {vendor!r}")


def reverse(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("studies", "0001_initial")]
    operations = [migrations.RunPython(forward, reverse)]
