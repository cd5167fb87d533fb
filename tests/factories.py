"""factory_boy factories shared by the platform tests."""

import factory
from django.contrib.auth import get_user_model

from mriplatform.accounts.models import Institution
from mriplatform.accounts.roles import assign_role

PASSWORD = "correct-horse-battery-9"


class InstitutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Institution
        django_get_or_create = ("code",)

    name = factory.Sequence(lambda n: f"Hospital {n}")
    code = factory.Sequence(lambda n: f"site{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    institution = factory.SubFactory(InstitutionFactory)
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for role in extracted or ():
            assign_role(self, role)
        if create:
            self.save()


class ProtocolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "protocols.Protocol"

    name = factory.Sequence(lambda n: f"Protocol {n}")
    method = "zero_filled"
    params = factory.LazyAttribute(
        lambda p: (
            __import__("recon_engine.registry", fromlist=["get_method"])
            .get_method(p.method)
            .validate({})
        )
    )
    mask_pattern = "equispaced"
    acceleration = 4.0
    center_fraction = 0.08
    tr_ms = 3000.0
    phase_encodes = 256


class CaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "cases.Case"

    institution = factory.SubFactory(InstitutionFactory)
    subject_code = factory.Sequence(lambda n: f"SUBJ-{n:04d}")
    anatomy = "knee"


class SeriesFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "cases.Series"

    case = factory.SubFactory(CaseFactory)
    kind = "fastmri_h5"
    description = "raw k-space"


class ReconJobFactory(factory.django.DjangoModelFactory):
    """A succeeded job whose output is a reconstruction Series row (no real recon run)."""

    class Meta:
        model = "jobs.ReconJob"

    input_series = factory.SubFactory(SeriesFactory)
    protocol = factory.SubFactory(ProtocolFactory)
    status = "succeeded"
    output_series = factory.LazyAttribute(
        lambda j: SeriesFactory(
            case=j.input_series.case, kind="reconstruction", description=str(j.protocol)
        )
    )


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "studies.Study"

    title = factory.Sequence(lambda n: f"Reader study {n}")
    coordinator = factory.SubFactory(UserFactory, roles=("coordinator",))
    institution = factory.SelfAttribute("coordinator.institution")


class ArmFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "studies.Arm"

    study = factory.SubFactory(StudyFactory)
    protocol = factory.SubFactory(ProtocolFactory)
    label = factory.Sequence(lambda n: f"A{n}")


class StudyCaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "studies.StudyCase"

    study = factory.SubFactory(StudyFactory)
    case = factory.SubFactory(CaseFactory, institution=factory.SelfAttribute("..study.institution"))


class QuestionFactory(factory.django.DjangoModelFactory):
    """A required 1-5 Likert question unless ``kind`` and its fields say otherwise."""

    class Meta:
        model = "studies.Question"

    study = factory.SubFactory(StudyFactory)
    key = factory.Sequence(lambda n: f"question_{n}")
    kind = "likert"
    label = factory.LazyAttribute(lambda o: o.key.replace("_", " ").capitalize())
    scale_min = factory.LazyAttribute(lambda o: 1 if o.kind == "likert" else None)
    scale_max = factory.LazyAttribute(lambda o: 5 if o.kind == "likert" else None)
