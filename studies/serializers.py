"""DRF serializers of reader studies: the tidy reads row (documents the API schema)."""

from __future__ import annotations

from rest_framework import serializers


class TidyReadSerializer(serializers.Serializer):
    """One row of :func:`studies.export.tidy_reads`: one reader's answer to one question
    in one read. ``value`` is an int (Likert), float (measurement), str (finding or choice
    label, text, preference) or object (ROI summary: shape, mean, sd, area_mm2, ...);
    ``value_numeric`` its numeric code (findings 1/0 or grade index, ROI mean)."""

    reader_id = serializers.CharField(help_text="Reader pseudonym, R1, R2, ...")
    case_id = serializers.CharField(help_text="Study case id")
    patient_id = serializers.CharField(help_text="De-identified subject code")
    modality_id = serializers.CharField(help_text="Arm label (left arm of a paired read)")
    arm_protocol = serializers.CharField(help_text="Protocol name and version of the arm")
    second_modality_id = serializers.CharField(
        allow_null=True, help_text="Right arm of a side-by-side read"
    )
    session = serializers.IntegerField(help_text="Reading session, 1-based")
    read_index = serializers.IntegerField(help_text="1 for the first read, 2 for its repeat")
    read_kind = serializers.CharField(help_text="independent, repeat or paired")
    question = serializers.CharField(help_text="Question key")
    question_kind = serializers.CharField()
    criterion = serializers.CharField(allow_blank=True)
    structure = serializers.CharField(allow_blank=True)
    value = serializers.JSONField()
    value_numeric = serializers.FloatField(allow_null=True)
    confidence = serializers.IntegerField(allow_null=True, help_text="1-5 (ROC rating)")
    truth = serializers.JSONField(allow_null=True, help_text="Reference standard, same coding")
    truth_numeric = serializers.FloatField(allow_null=True)
    time_on_case_s = serializers.FloatField(allow_null=True)
    submitted_at = serializers.DateTimeField()
