"""Protocol form: fixed sampling/timing fields plus one field per method parameter,
generated from the method's schema in the engine's registry."""

from __future__ import annotations

from django import forms

from mriplatform.protocols.models import TIMING_FIELDS, Protocol
from recon_engine.registry import all_methods, get_method

PARAM_PREFIX = "param__"


def method_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for spec in all_methods():
        if spec.family == "super_resolution":
            continue
        groups.setdefault(spec.family.replace("_", " ").capitalize(), []).append(
            (spec.name, spec.label)
        )
    return list(groups.items())


def _field_for(param) -> forms.Field:
    label = param.name.replace("_", " ").capitalize() + (f" ({param.unit})" if param.unit else "")
    common = {"label": label, "help_text": param.help, "initial": param.default}
    if param.type == "int":
        return forms.IntegerField(min_value=param.min, max_value=param.max, **common)
    if param.type == "float":
        return forms.FloatField(min_value=param.min, max_value=param.max, **common)
    if param.type == "bool":
        return forms.BooleanField(required=False, **common)
    if param.type == "choice":
        return forms.ChoiceField(choices=[(c, c) for c in param.choices], **common)
    return forms.CharField(max_length=200, **common)


class ProtocolForm(forms.ModelForm):
    method = forms.ChoiceField(choices=method_choices)

    class Meta:
        model = Protocol
        fields = [
            "name",
            "description",
            "method",
            "mask_pattern",
            "acceleration",
            "center_fraction",
            "mask_seed",
            "tr_ms",
            "phase_encodes",
            "nsa",
            "sms_factor",
            "partitions",
            "echo_train_length",
            "reference",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, method: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reference"].queryset = Protocol.objects.filter(is_current=True)
        chosen = method or self.data.get("method") or self.initial.get("method")
        chosen = chosen or (self.instance.method if self.instance.pk else None)
        offered = [name for _, group in self.fields["method"].choices for name, _ in group]
        if chosen not in offered:  # none yet, or an unknown name the choice field reports
            chosen = offered[0]
        self.fields["method"].initial = chosen
        self.spec = get_method(chosen)
        current = self.instance.params if self.instance.pk else {}
        for param in self.spec.params:
            field = _field_for(param)
            if param.name in current:
                field.initial = current[param.name]
            self.fields[PARAM_PREFIX + param.name] = field

    def param_fields(self):
        return [self[name] for name in self.fields if name.startswith(PARAM_PREFIX)]

    def reference_timings(self) -> dict[int, dict[str, float]]:
        """Sequence timing of every protocol offered as a reference, keyed by id.

        The page copies it into the timing fields when a reference is chosen, so that the
        time reduction compares accelerations of one sequence, not two sequences.
        """
        return {
            row["pk"]: {name: row[name] for name in TIMING_FIELDS}
            for row in self.fields["reference"].queryset.values("pk", *TIMING_FIELDS)
        }

    def base_fields_bound(self):
        return [self[name] for name in self.fields if not name.startswith(PARAM_PREFIX)]

    def clean(self):
        data = super().clean()
        data["params"] = {
            key[len(PARAM_PREFIX) :]: value
            for key, value in data.items()
            if key.startswith(PARAM_PREFIX) and value is not None
        }
        return data

    def _post_clean(self):
        self.instance.params = self.cleaned_data.get("params", {})
        super()._post_clean()


class ExternalModelForm(forms.Form):
    """Upload of a site's TorchScript/ONNX network with its model card fields."""

    name = forms.RegexField(
        regex=r"^[a-z][a-z0-9_]{0,47}$",
        max_length=48,
        help_text="Lower-case letters, digits and _; the method becomes ext_<name>.",
        error_messages={"invalid": "Use lower-case letters, digits and _, starting with a letter."},
    )
    format = forms.ChoiceField(choices=[("torchscript", "TorchScript"), ("onnx", "ONNX")])
    file = forms.FileField(help_text="TorchScript archive (.pt) or ONNX file (.onnx).")
    title = forms.CharField(max_length=120)
    description = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    training_data = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What it was trained on (anatomy, contrasts, field strength, vendor).",
    )
    intended_use = forms.CharField(max_length=2000, required=False)
    coils = forms.IntegerField(min_value=1, max_value=64, required=False)
    matrix_h = forms.IntegerField(label="Matrix H", min_value=8, max_value=640, required=False)
    matrix_w = forms.IntegerField(label="Matrix W", min_value=8, max_value=640, required=False)

    def clean(self):
        data = super().clean()
        if bool(data.get("matrix_h")) != bool(data.get("matrix_w")):
            raise forms.ValidationError("Give both matrix sizes or neither.")
        return data
