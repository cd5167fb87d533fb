"""Reference-standard pages: who gets which status code, CSRF on every POST, errors shown,
and the two-readers-plus-adjudicator flow through the forms."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from guardian.shortcuts import assign_perm

from studies import reference as ref
from studies.models import Question, ReferenceRead, ReferenceStandard
from tests.factories import UserFactory


@pytest.fixture
def site(build_study):
    study, arms, cases, readers = build_study(n_cases=2, n_arms=2, n_readers=1)
    study.reference_arm = arms[0]
    study.save(update_fields=["reference_arm"])
    Question.objects.create(
        study=study,
        key="tear",
        kind=Question.Kind.FINDING,
        label="Meniscal tear",
        choices=["absent", "present"],
        order=1,
    )
    Question.objects.create(
        study=study,
        key="thickness",
        kind=Question.Kind.NUMBER,
        label="Cartilage thickness",
        unit="mm",
        order=2,
    )
    p1, p2, adjudicator = (UserFactory(roles=("reader",)) for _ in range(3))
    assign_perm("studies.reference_study", p1, study)
    assign_perm("studies.reference_study", p2, study)
    assign_perm("studies.adjudicate_study", adjudicator, study)
    return {
        "study": study,
        "case": cases[0],
        "reader": readers[0],
        "coordinator": study.coordinator,
        "p1": p1,
        "p2": p2,
        "adjudicator": adjudicator,
        "outsider": UserFactory(roles=("coordinator",)),
    }


def _client(user, csrf=False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def _urls(s) -> dict[str, str]:
    pk, case = s["study"].pk, s["case"].pk
    return {
        "status": reverse("studies:reference", args=[pk]),
        "import": reverse("studies:reference_import", args=[pk]),
        "template": reverse("studies:reference_template", args=[pk]),
        "read": reverse("studies:reference_read", args=[pk, case]),
        "consensus": reverse("studies:reference_consensus", args=[pk, case]),
        "queue": reverse("studies:adjudicate", args=[pk]),
        "cell": reverse("studies:adjudicate_cell", args=[pk, case, "tear"]),
    }


EXPECTED = {
    # page: (coordinator, panel member, adjudicator)
    "status": (200, 200, 200),
    "import": (200, 403, 403),
    "template": (200, 403, 403),
    "read": (403, 200, 403),
    "consensus": (200, 200, 403),
    "queue": (403, 403, 200),
    "cell": (403, 403, 200),
}


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_status_codes_per_role(site, page):
    url = _urls(site)[page]
    for user, code in zip(("coordinator", "p1", "adjudicator"), EXPECTED[page], strict=True):
        assert _client(site[user]).get(url).status_code == code, (page, user)
    # The study's reader and unrelated users learn nothing, not even that the study exists.
    assign_perm("studies.reference_study", site["reader"], site["study"])
    for user in ("reader", "outsider"):
        assert _client(site[user]).get(url).status_code == 404, (page, user)
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]


def test_readers_cannot_post_anything(site):
    urls = _urls(site)
    assign_perm("studies.reference_study", site["reader"], site["study"])
    assign_perm("studies.adjudicate_study", site["reader"], site["study"])
    client = _client(site["reader"])
    for page in ("read", "consensus", "cell"):
        assert client.post(urls[page], {"q_tear": "present"}).status_code == 404
    assert not ReferenceRead.objects.exists() and not ReferenceStandard.objects.exists()


def test_posts_need_the_csrf_token(site):
    urls = _urls(site)
    client = _client(site["p1"], csrf=True)
    assert client.post(urls["read"], {"q_tear": "present"}).status_code == 403
    assert client.post(urls["consensus"], {"q_tear": "present"}).status_code == 403
    coordinator = _client(site["coordinator"], csrf=True)
    csv_file = f"case,question,value\n{site['case'].case.subject_code},tear,present\n"
    assert coordinator.post(urls["import"], {"file": _upload(csv_file)}).status_code == 403
    assert not ReferenceRead.objects.exists() and not ReferenceStandard.objects.exists()
    # With the token from the form the same post goes through.
    page = client.get(urls["read"])
    token = page.cookies["csrftoken"].value
    response = client.post(urls["read"], {"q_tear": "present"}, headers={"X-CSRFToken": token})
    assert response.status_code == 302
    assert ReferenceRead.objects.get().value == "present"


def _upload(text: str, name: str = "reference.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, text.encode("utf-8"), content_type="text/csv")


def test_two_reads_disagree_then_adjudication_through_the_pages(site):
    urls = _urls(site)
    r = _client(site["p1"]).post(urls["read"], {"q_tear": "present", "q_thickness": "2.5"})
    assert r.status_code == 302 and r["Location"] == urls["status"]
    # The second member sees that a read is in, but not its value, until theirs is in.
    p2 = _client(site["p2"])
    page = p2.get(urls["status"]).content.decode()
    assert "hidden until you read" in page and "2.5 mm" not in page
    p2.post(urls["read"], {"q_tear": "absent", "q_thickness": "2.5"})
    assert ReferenceStandard.objects.get(question="thickness").source == "agreement"
    assert not ReferenceStandard.objects.filter(question="tear").exists()
    # The read form now refuses changes to both cells.
    form = p2.get(urls["read"]).content.decode()
    assert form.count("both reads are in") == 2

    adjudicator = _client(site["adjudicator"])
    queue = adjudicator.get(urls["queue"]).content.decode()
    assert f"{site['p1'].username}: present" in queue
    assert f"{site['p2'].username}: absent" in queue
    cell = adjudicator.get(urls["cell"]).content.decode()
    assert "present" in cell and "absent" in cell and 'id="adjudication-form"' in cell
    bad = adjudicator.post(urls["cell"], {"q_tear": ""})
    assert bad.status_code == 400 and "Choose the final value." in bad.content.decode()
    done = adjudicator.post(urls["cell"], {"q_tear": "present", "note": "seen on coronal"})
    assert done.status_code == 302
    truth = ReferenceStandard.objects.get(question="tear")
    assert (truth.value, truth.source, truth.note) == ("present", "adjudicated", "seen on coronal")
    assert "Nothing to adjudicate." in adjudicator.get(urls["queue"]).content.decode()

    status = _client(site["coordinator"]).get(urls["status"]).content.decode()
    assert "Adjudicated" in status and "Two reference readers agreed" in status
    assert 'id="reference-counts">2 of 4 values final' in status


def test_read_form_errors_are_shown_and_nothing_stored(site):
    urls = _urls(site)
    response = _client(site["p1"]).post(urls["read"], {"q_tear": "present", "q_thickness": "x"})
    assert response.status_code == 400
    assert "“x” is not a number" in response.content.decode()
    bad_choice = _client(site["p1"]).post(urls["read"], {"q_tear": "maybe"})
    assert bad_choice.status_code == 400
    assert not ReferenceRead.objects.exists()


def test_consensus_page_needs_a_reason_to_change_a_stored_value(site):
    urls = _urls(site)
    coordinator = _client(site["coordinator"])
    assert coordinator.post(urls["consensus"], {"q_thickness": "2.5"}).status_code == 302
    assert ReferenceStandard.objects.get().value == 2.5
    # Resubmitting the form unchanged is fine; a new value without a reason is refused.
    assert coordinator.post(urls["consensus"], {"q_thickness": "2.5"}).status_code == 302
    refused = coordinator.post(urls["consensus"], {"q_thickness": "3"})
    assert refused.status_code == 400 and "give the reason" in refused.content.decode()
    assert ReferenceStandard.objects.get().value == 2.5
    changed = coordinator.post(urls["consensus"], {"q_thickness": "3", "note": "re-measured"})
    assert changed.status_code == 302
    assert ReferenceStandard.objects.get().value == 3.0


def test_coordinator_sees_the_reference_arm_images_link(site):
    page = _client(site["coordinator"]).get(_urls(site)["status"]).content.decode()
    series = ref.reference_series(site["case"])
    assert series is not None
    assert reverse("cases:series", args=[series.uuid]) in page
    panel_page = _client(site["p1"]).get(_urls(site)["status"]).content.decode()
    assert reverse("cases:series", args=[series.uuid]) not in panel_page


def test_import_page_shows_row_errors_and_stores_nothing(site):
    urls = _urls(site)
    code = site["case"].case.subject_code
    client = _client(site["coordinator"])
    bad = client.post(
        urls["import"], {"file": _upload(f"case,question,value\n{code},tear,present\nZZ,tear,x\n")}
    )
    assert bad.status_code == 400
    text = bad.content.decode()
    assert "Nothing was imported." in text and "row 3: no case “ZZ” in this study" in text
    assert not ReferenceStandard.objects.exists()
    good = client.post(
        urls["import"], {"file": _upload(f"case,question,value\n{code},tear,present\n")}
    )
    assert good.status_code == 302
    assert ReferenceStandard.objects.get().source == "import"
    missing = client.post(urls["import"], {})
    assert missing.status_code == 400 and "This field is required." in missing.content.decode()


def test_template_lists_every_case_and_reference_question(site):
    response = _client(site["coordinator"]).get(_urls(site)["template"])
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().splitlines()
    assert lines[0] == "case,question,value,note"
    assert len(lines) == 1 + 2 * 2
    # The template fills back in and imports.
    filled = "\n".join(
        [lines[0]]
        + [
            line.replace(",tear,,", ",tear,absent,").replace(",thickness,,", ",thickness,1.5,")
            for line in lines[1:]
        ]
    )
    result = ref.import_reference_csv(site["study"], filled.encode(), site["coordinator"])
    assert result.created == 4


@pytest.mark.parametrize("status", ["open", "closed_for_analysis"])
def test_reference_can_be_completed_while_open_or_after_reading_ends(site, status):
    type(site["study"]).objects.filter(pk=site["study"].pk).update(status=status)
    urls = _urls(site)
    assert _client(site["coordinator"]).get(urls["status"]).status_code == 200
    assert _client(site["p1"]).post(urls["read"], {"q_tear": "present"}).status_code == 302
    assert _client(site["p2"]).post(urls["read"], {"q_tear": "present"}).status_code == 302
    assert ReferenceStandard.objects.get().source == "agreement"
    assert _client(site["reader"]).get(urls["status"]).status_code == 404


def test_adjudication_refusal_is_shown(site):
    urls = _urls(site)
    _client(site["p1"]).post(urls["read"], {"q_tear": "present"})
    _client(site["p2"]).post(urls["read"], {"q_tear": "absent"})
    assign_perm("studies.adjudicate_study", site["p1"], site["study"])
    response = _client(site["p1"]).post(urls["cell"], {"q_tear": "present"})
    assert response.status_code == 400
    assert "another adjudicator decides" in response.content.decode()
    assert not ReferenceStandard.objects.exists()


def test_reference_list_shows_each_user_their_studies(site):
    url = reverse("studies:reference_list")
    title = site["study"].title
    for user in ("coordinator", "p1", "adjudicator"):
        page = _client(site[user]).get(url)
        assert page.status_code == 200 and title in page.content.decode(), user
    # A reader of the study with a reference permission granted by mistake still sees nothing.
    assign_perm("studies.reference_study", site["reader"], site["study"])
    for user in ("reader", "outsider"):
        page = _client(site[user]).get(url).content.decode()
        assert title not in page and "No study asks you" in page, user


def test_consensus_page_after_close_completes_but_never_changes(site):
    urls = _urls(site)
    coordinator = _client(site["coordinator"])
    assert coordinator.post(urls["consensus"], {"q_tear": "present"}).status_code == 302
    type(site["study"]).objects.filter(pk=site["study"].pk).update(status="closed_for_analysis")
    page = coordinator.get(urls["consensus"]).content.decode()
    assert "stored values can no longer change" in page
    refused = coordinator.post(urls["consensus"], {"q_tear": "absent", "note": "second look"})
    assert refused.status_code == 400 and "closed for analysis" in refused.content.decode()
    assert ReferenceStandard.objects.get().value == "present"
    # the stored value resubmitted unchanged plus a missing one: the missing one is stored
    done = coordinator.post(urls["consensus"], {"q_tear": "present", "q_thickness": "2.5"})
    assert done.status_code == 302
    assert {t.question: t.value for t in ReferenceStandard.objects.all()} == {
        "tear": "present",
        "thickness": 2.5,
    }
