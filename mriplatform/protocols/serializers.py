from rest_framework import serializers

from mriplatform.protocols.models import SCIENTIFIC_FIELDS, Protocol


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
