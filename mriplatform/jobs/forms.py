from django import forms

from mriplatform.cases.models import Series
from mriplatform.protocols.models import Protocol


class SubmitForm(forms.Form):
    """Batch submission: every chosen raw series x every chosen protocol."""

    series = forms.ModelMultipleChoiceField(
        queryset=Series.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        help_text="Raw k-space series to reconstruct.",
    )
    protocols = forms.ModelMultipleChoiceField(
        queryset=Protocol.objects.filter(is_current=True), widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, series_queryset=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["series"].queryset = series_queryset
        self.fields["series"].label_from_instance = lambda s: (
            f"{s.case.subject_code} · {s.description or s.get_kind_display()}"
            f" ({s.n_slices or '?'} slices, {s.n_coils or '?'} coils)"
        )
        self.fields["protocols"].label_from_instance = lambda p: f"{p} · {p.method}"
