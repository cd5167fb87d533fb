"""Forms of the coordinator's study design pages (validation only; changes go through
:mod:`studies.design` and :mod:`studies.services`)."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from mriplatform.accounts.roles import Role
from mriplatform.cases.models import Series
from mriplatform.cases.permissions import visible_cases
from mriplatform.protocols.models import Protocol
from studies.models import Question, Study


class StudyForm(forms.ModelForm):
    """A study's reading design. ``template`` (new studies only) adds a question set."""

    template = forms.ChoiceField(
        label="Question template",
        required=False,
        help_text="Adds the template's questions; you can edit them afterwards.",
    )

    class Meta:
        model = Study
        fields = [
            "title",
            "washout_days",
            "paired_reads",
            "repeat_fraction",
            "repeat_washout_days",
            "allow_edit_until_session_end",
            "window_presets",
        ]
        labels = {
            "washout_days": "Washout between sessions (days)",
            "paired_reads": "Paired side-by-side comparison reads",
            "repeat_fraction": "Repeat-read fraction (0–1)",
            "repeat_washout_days": "Washout before repeat reads (days)",
            "allow_edit_until_session_end": "Readers may edit submitted reads until the "
            "session ends",
            "window_presets": "Window presets per sequence type (JSON)",
        }
        help_texts = {
            "repeat_fraction": "Share of (case, arm) reads read twice for intra-reader "
            "agreement; 0 for none.",
            "window_presets": 'E.g. {"PD": [{"name": "Cartilage", "width": 1800, "center": '
            '1100}]}; keys PD, PD-FS, T1, T2 (from each case\'s sequence). Units: the blinded '
            "images' display values, where every image set's 99.5th percentile is 3000. Types "
            "left out use the defaults.",
        }
        widgets = {
            "repeat_fraction": forms.NumberInput(attrs={"step": "0.05"}),
            "window_presets": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args, with_template: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if with_template:
            from studies.question_templates import template_choices

            self.fields["template"].choices = [("", "No template")] + list(template_choices())
        else:
            del self.fields["template"]

    def clean_window_presets(self) -> dict:
        from studies.display import validate_window_presets

        value = self.cleaned_data.get("window_presets") or {}
        validate_window_presets(value)
        return value

    def clean_repeat_fraction(self) -> float:
        value = self.cleaned_data["repeat_fraction"]
        if not 0 <= value <= 1:
            raise forms.ValidationError("The repeat fraction must lie between 0 and 1.")
        return value


class ArmForm(forms.Form):
    """One arm: an exact protocol version under a coordinator-facing label."""

    protocol = forms.ModelChoiceField(queryset=Protocol.objects.none(), label="Protocol version")
    label = forms.CharField(max_length=32)
    reference = forms.BooleanField(required=False, label="Reference (standard-of-care) arm")

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        self.study = study
        self.fields["protocol"].queryset = Protocol.objects.exclude(
            pk__in=study.arms.values("protocol")
        ).order_by("name", "-version")
        self.fields["protocol"].label_from_instance = lambda p: (
            f"{p.name} v{p.version} ({p.method}, R={p.acceleration:g})"
        )

    def clean_label(self) -> str:
        label = self.cleaned_data["label"].strip()
        if not label:
            raise forms.ValidationError("Give the arm a label.")
        if self.study.arms.filter(label=label).exists():
            raise forms.ValidationError(f"Arm {label} already exists in this study.")
        return label


class StudyCaseForm(forms.Form):
    """A case to include, and which raw series to reconstruct when it has several."""

    case = forms.ModelChoiceField(queryset=None)
    raw_series = forms.ModelChoiceField(
        queryset=Series.objects.none(),
        required=False,
        label="Raw series",
        help_text="Needed only when the case has several raw series.",
    )

    def __init__(self, *args, study: Study, user, **kwargs):
        super().__init__(*args, **kwargs)
        cases = visible_cases(user).exclude(pk__in=study.study_cases.values("case"))
        self.fields["case"].queryset = cases.order_by("subject_code")
        self.fields["case"].label_from_instance = lambda c: f"{c.subject_code} ({c.anatomy})"
        self.fields["raw_series"].queryset = Series.objects.filter(
            case__in=cases, kind__in=[Series.Kind.FASTMRI, Series.Kind.ISMRMRD]
        ).select_related("case")
        self.fields["raw_series"].label_from_instance = lambda s: (
            f"{s.case.subject_code}: {s.description or s.get_kind_display()} (#{s.pk})"
        )

    def clean(self):
        data = super().clean()
        case, raw = data.get("case"), data.get("raw_series")
        if case is None:
            return data
        if raw is not None and raw.case_id != case.pk:
            self.add_error("raw_series", "That raw series belongs to another case.")
        elif raw is None:
            raws = case.series.filter(kind__in=[Series.Kind.FASTMRI, Series.Kind.ISMRMRD])
            if raws.count() > 1:
                self.add_error(
                    "raw_series",
                    f"Case {case.subject_code} has {raws.count()} raw series: choose one.",
                )
        return data


def _reader_users():
    return (
        get_user_model()
        .objects.filter(is_active=True, groups__name=Role.READER.label)
        .order_by("username")
        .distinct()
    )


class ReaderForm(forms.Form):
    reader = forms.ModelChoiceField(queryset=None)

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reader"].queryset = _reader_users().exclude(
            pk__in=study.study_readers.values("reader")
        )


class PanelForm(forms.Form):
    """A reference-panel member or the adjudicator (users with the reader role)."""

    member = forms.ModelChoiceField(queryset=None, label="Radiologist")
    part = forms.ChoiceField(
        choices=[("reference", "Reference panel"), ("adjudicator", "Adjudicator")]
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["member"].queryset = _reader_users()


class TemplateForm(forms.Form):
    template = forms.ChoiceField(label="Question template")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from studies.question_templates import template_choices

        self.fields["template"].choices = list(template_choices())


class QuestionForm(forms.ModelForm):
    """One question of the reading form; shape checks per kind."""

    class Meta:
        model = Question
        fields = [
            "key",
            "order",
            "kind",
            "label",
            "help_text",
            "criterion",
            "structure",
            "scale_min",
            "scale_max",
            "anchors",
            "choices",
            "with_confidence",
            "unit",
            "required",
        ]
        widgets = {
            "anchors": forms.Textarea(attrs={"rows": 2}),
            "choices": forms.Textarea(attrs={"rows": 2}),
        }
        help_texts = {
            "choices": 'JSON list, e.g. ["absent", "present"] (findings and single choice).',
        }

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        self.study = study

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        others = self.study.questions.filter(key=key)
        if self.instance.pk:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError(f"This study already has a question with key {key}.")
        return key

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        lo, hi = data.get("scale_min"), data.get("scale_max")
        if kind == Question.Kind.LIKERT:
            if lo is None or hi is None:
                self.add_error("scale_max", "A Likert item needs a scale minimum and maximum.")
            elif lo >= hi:
                self.add_error("scale_max", "The scale maximum must exceed the minimum.")
        anchors = data.get("anchors")
        if anchors is not None and not isinstance(anchors, dict):
            self.add_error("anchors", 'Anchors are a JSON object, e.g. {"1": "non-diagnostic"}.')
        choices = data.get("choices")
        if choices is not None and not isinstance(choices, list):
            self.add_error("choices", "Choices are a JSON list.")
        elif kind in (Question.Kind.FINDING, Question.Kind.CHOICE) and len(choices or []) < 2:
            self.add_error("choices", "A finding or single-choice question needs two choices.")
        return data


class ReasonForm(forms.Form):
    """The reason an audited override (early release, closing for analysis) is made."""

    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, strip=True)


class PlanForm(forms.Form):
    """Inputs of a sample-size plan: a pilot (closed study + finding question) or stated
    Obuchowski-Rockette variance components (blank: published defaults), the AUC
    difference to detect, alpha and the power wanted."""

    source = forms.ChoiceField(
        choices=[("pilot", "A closed pilot study"), ("assumptions", "Stated assumptions")],
        widget=forms.RadioSelect,
        initial="pilot",
    )
    pilot_question = forms.ChoiceField(label="Pilot study and finding", required=False)
    effect = forms.FloatField(
        label="AUC difference to detect",
        required=False,
        min_value=-0.5,
        max_value=0.5,
        help_text="Blank: the pilot's observed difference (required with stated assumptions).",
    )
    alpha = forms.FloatField(initial=0.05, min_value=0.001, max_value=0.2)
    power = forms.FloatField(label="Power wanted", initial=0.8, min_value=0.5, max_value=0.99)
    var_error = forms.FloatField(label="Var (error variance)", required=False, min_value=0)
    cov1 = forms.FloatField(label="Cov1", required=False)
    cov2 = forms.FloatField(label="Cov2", required=False)
    cov3 = forms.FloatField(label="Cov3", required=False)
    var_tr = forms.FloatField(label="Treatment-by-reader variance", required=False)
    n_cases = forms.IntegerField(label="Cases behind the components", required=False, min_value=2)

    COMPONENTS = ("var_error", "cov1", "cov2", "cov3", "var_tr", "n_cases")

    def __init__(self, *args, pilot_choices: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pilot_question"].choices = [("", "—"), *pilot_choices]

    def clean(self):
        data = super().clean()
        if data.get("source") == "pilot" and not data.get("pilot_question"):
            self.add_error("pilot_question", "Choose a pilot study and finding.")
        if data.get("source") == "assumptions":
            given = [data.get(k) is not None for k in self.COMPONENTS]
            if any(given) and not all(given):
                raise forms.ValidationError(
                    "Give all six variance components, or none for the published defaults."
                )
            if data.get("effect") in (None, 0):
                self.add_error("effect", "State the AUC difference to detect.")
        return data
