from rest_framework import serializers

from mriplatform.cases.models import Case, Series


class SeriesSerializer(serializers.ModelSerializer):
    class Meta:
        model = Series
        fields = [
            "id",
            "uuid",
            "case",
            "kind",
            "description",
            "series_instance_uid",
            "n_slices",
            "n_coils",
            "matrix",
            "fully_sampled",
            "metadata",
            "created",
        ]
        read_only_fields = fields


class CaseSerializer(serializers.ModelSerializer):
    series = SeriesSerializer(many=True, read_only=True)
    institution = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Case
        fields = [
            "id",
            "institution",
            "subject_code",
            "anatomy",
            "field_strength_t",
            "vendor",
            "sequence",
            "notes",
            "created",
            "series",
        ]
        read_only_fields = ["id", "institution", "created", "series"]


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), allow_empty=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


def validated_description(data) -> str:
    """The optional series ``description`` of a multipart upload, validated as
    :class:`UploadSerializer` does (at most 200 characters); ValidationError if not."""
    field = UploadSerializer().fields["description"]
    try:
        return field.run_validation(data.get("description", ""))
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"description": exc.detail}) from None
