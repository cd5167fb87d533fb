import math

from rest_framework import serializers

from mriplatform.protocols.models import SCIENTIFIC_FIELDS, Protocol


def finite_positive(value: float) -> None:
    """DRF's FloatField takes "NaN", "inf" and "1e309"; a stored one broke every list."""
    if not math.isfinite(value) or value <= 0:
        raise serializers.ValidationError("must be a finite number above 0")


class ProtocolSerializer(serializers.ModelSerializer):
    acquisition_time_s = serializers.FloatField(read_only=True)
    effective_acceleration = serializers.FloatField(read_only=True)
    time_reduction = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Protocol
        fields = [
            "id",
            "lineage",
            "version",
            "is_current",
            "description",
            "created",
            "acquisition_time_s",
            "effective_acceleration",
            "time_reduction",
            *SCIENTIFIC_FIELDS,
        ]
        read_only_fields = ["lineage", "version", "is_current", "created"]
        # Versions are numbered by the model (new_version); no client-side uniqueness checks.
        validators = []
        extra_kwargs = {
            name: {"validators": [finite_positive]}
            for name in ("acceleration", "center_fraction", "tr_ms", "nsa")
        }

    def validate(self, attrs):
        # The model's clean() checks the method and its parameters against the registry.
        from django.core.exceptions import ValidationError as DjangoValidationError

        candidate = Protocol(**{k: v for k, v in attrs.items()})
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        attrs["params"] = candidate.params
        return attrs
