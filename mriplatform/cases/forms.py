from django import forms
from django.conf import settings

from mriplatform.cases.models import Case


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files (DICOM instances), or one zip of a DICOM folder, or one HDF5 file."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        files = (
            [single(d, initial) for d in data]
            if isinstance(data, list | tuple)
            else [single(data, initial)]
        )
        total = sum(f.size for f in files)
        if total > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"upload of {total / 1024**3:.1f} GiB exceeds the limit of "
                f"{settings.MAX_UPLOAD_BYTES / 1024**3:.1f} GiB"
            )
        return files


class UploadForm(forms.Form):
    files = MultipleFileField(
        help_text="DICOM files or a .zip of a DICOM folder (one series), or one raw k-space "
        "file (fastMRI or ISMRMRD HDF5)."
    )
    description = forms.CharField(
        max_length=200, required=False, help_text="For administrators only; never shown to readers."
    )


class CaseForm(forms.ModelForm):
    files = MultipleFileField(help_text=UploadForm.base_fields["files"].help_text)
    description = forms.CharField(
        max_length=200, required=False, help_text="Series label for administrators only."
    )

    class Meta:
        model = Case
        fields = ["subject_code", "anatomy", "field_strength_t", "vendor", "sequence", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 2})}
        help_texts = {"subject_code": "A pseudonym (never the patient's name or hospital ID)."}

    def __init__(self, *args, institution=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.institution = institution

    def clean_subject_code(self):
        code = self.cleaned_data["subject_code"].strip()
        if Case.objects.filter(institution=self.institution, subject_code=code).exists():
            raise forms.ValidationError("this site already has a case with that subject code")
        return code
