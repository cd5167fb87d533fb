from django import forms

from mriplatform.cases.models import Case
from mriplatform.protocols.models import Protocol
from recon_engine.fidelity.lesions import LESION_KINDS


class FidelityRunForm(forms.Form):
    name = forms.CharField(max_length=120)
    protocols = forms.ModelMultipleChoiceField(
        queryset=Protocol.objects.filter(is_current=True).order_by("name"),
        widget=forms.CheckboxSelectMultiple,
    )
    cases = forms.ModelMultipleChoiceField(
        queryset=Case.objects.order_by("subject_code"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Cases with raw k-space; none: the shipped simulated slice.",
    )
    lesion_kind = forms.ChoiceField(choices=[(k, k.replace("_", " ")) for k in LESION_KINDS])
    contrast = forms.FloatField(initial=-0.3, help_text="Fraction of the local signal (-1..).")
    sizes_mm = forms.CharField(initial="1,2,3,5,8", help_text="Lesion sizes in mm, commas.")
    n_realisations = forms.IntegerField(initial=50, min_value=8, max_value=500)
    snr = forms.FloatField(initial=20.0, min_value=1, max_value=1000)
    pixel_mm = forms.FloatField(initial=1.0, min_value=0.05, max_value=10)
    matrix = forms.IntegerField(initial=128, min_value=32, max_value=512)

    def clean_sizes_mm(self) -> list[float]:
        text = self.cleaned_data["sizes_mm"]
        try:
            sizes = [float(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise forms.ValidationError("give sizes in mm separated by commas") from None
        if not sizes:
            raise forms.ValidationError("give at least one size")
        return sizes


class KnownTruthStudyForm(forms.Form):
    title = forms.CharField(max_length=200)
    protocols = forms.ModelMultipleChoiceField(
        queryset=Protocol.objects.filter(is_current=True).order_by("name"),
        widget=forms.CheckboxSelectMultiple,
        help_text="One arm per protocol; the first is the reference arm.",
    )
    n_cases = forms.IntegerField(initial=8, min_value=2, max_value=200)
    lesion_kind = forms.ChoiceField(choices=[(k, k.replace("_", " ")) for k in LESION_KINDS])
    size_mm = forms.FloatField(initial=3.0)
    contrast = forms.FloatField(initial=-0.4)
    matrix = forms.IntegerField(initial=128, min_value=32, max_value=512)
    pixel_mm = forms.FloatField(initial=1.0, min_value=0.05, max_value=10)
    snr = forms.FloatField(initial=20.0, min_value=1, max_value=1000)
