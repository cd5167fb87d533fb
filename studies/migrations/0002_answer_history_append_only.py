"""Database triggers that refuse UPDATE and DELETE on answer-history rows."""

from django.db import migrations

from mriplatform.audit.triggers import append_only


class Migration(migrations.Migration):
    dependencies = [("studies", "0001_initial")]
    operations = [
        append_only("studies_answerhistory", "studies_answerhistory", "answer history is")
    ]
