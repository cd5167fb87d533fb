from rest_framework import serializers

from mriplatform.cases.models import Series
from mriplatform.jobs.models import ReconJob
from mriplatform.protocols.models import Protocol


class ReconJobSerializer(serializers.ModelSerializer):
    case = serializers.IntegerField(source="input_series.case_id", read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = ReconJob
        fields = [
            "id",
            "case",
            "input_series",
            "protocol",
            "status",
            "progress_done",
            "progress_total",
            "progress_percent",
            "attempts",
            "error",
            "worker",
            "heartbeat_at",
            "lease_owner",
            "output_series",
            "metrics",
            "provenance",
            "created",
            "started",
            "finished",
        ]
        read_only_fields = fields


class SubmitSerializer(serializers.Serializer):
    """Batch submission: every listed raw series x every listed protocol."""

    series = serializers.PrimaryKeyRelatedField(
        queryset=Series.objects.none(), many=True, allow_empty=False
    )
    protocols = serializers.PrimaryKeyRelatedField(
        queryset=Protocol.objects.filter(is_current=True), many=True, allow_empty=False
    )

    def __init__(self, *args, series_queryset=None, **kwargs):
        super().__init__(*args, **kwargs)
        if series_queryset is not None:  # the views pass the caller's manageable series
            self.fields["series"].child_relation.queryset = series_queryset

    def validate_series(self, value):
        bad = [s.pk for s in value if not s.is_raw]
        if bad:
            raise serializers.ValidationError(f"series {bad} are not raw k-space")
        return value
