"""Each task speaks its own words (issue 21, part C): a refusal, the default consent and instructions, the Prolific
description and the help texts name what the survey's own task does (2AFC, clustering, classification), never a
rule or a screen of another task."""
import pytest

from iri_worker.services import target_photo_create
from surveys.models import DEFAULT_CONSENT, DEFAULT_INSTRUCTIONS, DEFAULT_TEXTS, Survey
from surveys.services import survey_create
from surveys.services.prolific import DESCRIPTIONS, prolific_description
from tests.conftest import finished_iri_set
from tests.surveys.test_classification import labelled_photos, png

pytestmark = pytest.mark.django_db

TWO_AFC_WORDS = ("foil", "same_class", "two images", "two of them", "closer", "alike", "F** for")


def words_of_another_task(text: str) -> list[str]:
    return [w for w in TWO_AFC_WORDS if w.lower() in text.lower()]


def test_a_classification_from_unlabelled_photos_is_refused_in_words_of_classification(researcher_client, team):
    unlabelled = finished_iri_set([target_photo_create(team=team, name=f"photo {k}", data=png((200, 9, 9), 199 + k))
                                   for k in range(2)])

    response = researcher_client.post("/api/surveys/", {"slug": "c", "title": "t", "iri_jobs": [unlabelled.pk],
                                                        "task_type": "classification"}, format="json")

    assert response.status_code == 400
    message = response.json()["message"]
    assert "classification" in message and "categor" in message and "photo 0, photo 1" in message
    assert words_of_another_task(message) == []


def test_the_same_class_foil_still_names_its_rule(researcher_client, iri_set):
    response = researcher_client.post("/api/surveys/", {"slug": "sc", "title": "t", "iri_jobs": [iri_set.pk],
                                                        "foil_rule": "same_class"}, format="json")

    assert response.status_code == 400 and "same_class" in response.json()["message"]


@pytest.mark.parametrize("task_type", ["cluster", "classification"])
def test_a_survey_left_with_the_2afc_texts_gets_its_own_tasks_consent_and_instructions(team, photos, task_type):
    if task_type == "cluster":
        sets = [finished_iri_set(photos, rng_seed=seed) for seed in range(2)]
    else:
        sets = [labelled_photos(team)[0]]
    # The admin's form comes filled with the model's (2AFC) defaults, with its own line ends.
    survey = survey_create(slug="words", title="t", iri_jobs=sets, task_type=task_type,
                           consent_md=DEFAULT_CONSENT.replace("\n", "\r\n"), instructions_md=DEFAULT_INSTRUCTIONS)

    assert survey.consent_md == DEFAULT_TEXTS[task_type]["consent_md"]
    assert survey.instructions_md == DEFAULT_TEXTS[task_type]["instructions_md"]
    assert words_of_another_task(survey.consent_md + survey.instructions_md) == []


def test_a_researchers_own_texts_are_kept(iri_set):
    survey = survey_create(slug="own", title="t", iri_jobs=[iri_set], consent_md="Our consent.",
                           instructions_md="Our instructions.")

    assert (survey.consent_md, survey.instructions_md) == ("Our consent.", "Our instructions.")


def test_the_default_texts_of_each_task_speak_of_that_task():
    assert set(DEFAULT_TEXTS) == set(Survey.TaskType.values)
    assert "two of them" in DEFAULT_TEXTS["2afc"]["consent_md"]
    assert "reference" in DEFAULT_TEXTS["cluster"]["consent_md"] + DEFAULT_TEXTS["cluster"]["instructions_md"]
    classify = DEFAULT_TEXTS["classification"]
    assert "category" in classify["consent_md"] and "category" in classify["instructions_md"]
    for task in ("cluster", "classification"):
        assert words_of_another_task(" ".join(DEFAULT_TEXTS[task].values())) == []


@pytest.mark.parametrize("task_type, image_ms, says, never", [
    ("2afc", 300, "closer", "category"),
    ("cluster", 300, "reference", "category"),
    ("classification", 300, "only for a moment", "closer"),
    ("classification", None, "category", "moment"),  # untimed: the image stays until answered
])
def test_the_prolific_description_is_the_surveys_own_task(task_type, image_ms, says, never):
    description = prolific_description(survey=Survey(task_type=task_type, image_ms=image_ms), minutes=7)

    assert description.startswith(DESCRIPTIONS[task_type]) and description.endswith("About 7 minutes.")
    assert says in description and never not in description


def test_the_help_texts_say_which_task_a_setting_is_for():
    help_of = {f.name: str(f.help_text) for f in Survey._meta.get_fields() if hasattr(f, "help_text")}

    assert help_of["foil_rule"].startswith("2AFC only")
    assert help_of["cluster_variant"].startswith("Clustering only")
    for field in ("fixation_ms", "image_ms", "mask_ms", "screening_trials", "screening_pass_fraction", "categories"):
        assert help_of[field].startswith("Classification"), field
