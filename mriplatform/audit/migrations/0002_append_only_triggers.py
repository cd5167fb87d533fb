"""Database triggers that refuse UPDATE and DELETE on audit rows."""

from django.db import migrations

from mriplatform.audit.triggers import append_only


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [append_only("audit_auditevent", "audit", "audit events are")]
