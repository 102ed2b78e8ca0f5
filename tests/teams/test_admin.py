"""Two labs in one Django admin: members who are not superusers see and change only their own lab's photos, jobs,
surveys and reports, as their role allows; every write lands in the audit log, which only owners read."""
import io
import re

import pytest
from django.test import Client
from PIL import Image
from rest_framework.authtoken.models import Token

from iri_worker.models import Checkpoint, IriJob, TargetPhoto
from iri_worker.services import target_photo_create
from operations.models import OperationRun
from results.models import TrialProxyChoice
from surveys.models import Survey
from surveys.services import survey_create
from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.admin_teams import ALREADY_MEMBER, UNKNOWN_MEMBER
from teams.models import AuditEntry, Membership, Role, Team
from teams.services import LAST_OWNER, audit_record, membership_remove, membership_set, team_create
from tests.conftest import finished_iri_set, wait_for
from tests.iri_worker.test_checkpoints import tiny_weights
from tests.teams.test_admin_crawl import rendered_form

pytestmark = pytest.mark.django_db


def staff_member(django_user_model, name, **roles):
    """A staff user who is not a superuser, with a role in each team given (team=role)."""
    user = django_user_model.objects.create_user(username=name, password=f"pw-{name}-123", is_staff=True)
    for team, role in roles.values():
        membership_set(team=team, user=user, role=role)
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def png(name="p.png", colour=(200, 30, 30)):
    out = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(out, format="PNG")
    out.seek(0)
    out.name = name
    return out


def listed(client, url) -> set[int]:
    response = client.get(url)
    assert response.status_code == 200, url
    return {obj.pk for obj in response.context["cl"].result_list}


@pytest.fixture
def lab_b(db):
    return team_create(name="Lab B")


@pytest.fixture
def lab_b_survey(lab_b):
    """Lab B's own photos, finished IRI set and draft survey."""
    photos = [target_photo_create(team=lab_b, name=f"b{i}", data=png(colour=(i * 80, 90, 20)).read()) for i in range(2)]
    return survey_create(slug="b-study", title="Lab B's study", iri_jobs=[finished_iri_set(photos)])


@pytest.fixture
def lab_a_survey(iri_set):
    return survey_create(slug="a-study", title="Lab A's study", iri_jobs=[iri_set])


@pytest.fixture
def a_researcher(django_user_model, team):
    return staff_member(django_user_model, "ada", a=(team, Role.RESEARCHER))


def test_a_researcher_sees_only_their_labs_photos_jobs_and_surveys(a_researcher, lab_a_survey, lab_b_survey):
    client = logged_in(a_researcher)

    assert listed(client, "/admin/iri_worker/targetphoto/") == set(TargetPhoto.objects.filter(team__name="Lab A").values_list("pk", flat=True))
    assert listed(client, "/admin/iri_worker/irijob/") == {lab_a_survey.iri_jobs.get().pk}
    assert listed(client, "/admin/surveys/survey/") == {lab_a_survey.pk}
    assert listed(client, "/admin/results/surveyreport/") == {lab_a_survey.pk}
    index = client.get("/admin/").content.decode()
    assert "Lab B" not in client.get("/admin/surveys/survey/").content.decode()  # not even in the filters
    assert "Audit entries" not in index  # owners only


def test_another_labs_pages_do_not_exist_and_nothing_changes(a_researcher, lab_b_survey, django_capture_on_commit_callbacks):
    client = logged_in(a_researcher)
    b_job = lab_b_survey.iri_jobs.get()

    change = client.get(f"/admin/iri_worker/irijob/{b_job.pk}/change/", follow=True)
    assert change.redirect_chain[-1][0] == "/admin/" and "doesn’t exist" in change.content.decode()
    edited = client.post(f"/admin/surveys/survey/{lab_b_survey.pk}/change/", {"title": "taken over"})
    assert edited.status_code == 302 and edited["Location"] == "/admin/"
    base = f"/admin/results/surveyreport/{lab_b_survey.pk}/report"
    for url in [f"/admin/surveys/survey/{lab_b_survey.pk}/monitor/", f"{base}/", f"{base}/plot/alignment.svg",
                f"{base}/export/answers.csv", f"{base}/export/conditions.csv"]:
        assert client.get(url).status_code == 404, url
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        assert client.post(f"{base}/proxy", {"metric": "ssim"}).status_code == 404

    lab_b_survey.refresh_from_db()
    assert lab_b_survey.title == "Lab B's study" and not enqueued and not OperationRun.objects.exists()
    assert not AuditEntry.objects.filter(team=lab_b_survey.team).exists()


def test_a_viewer_can_look_but_not_add_change_or_act(django_user_model, team, lab_a_survey):
    viewer = staff_member(django_user_model, "vic", a=(team, Role.VIEWER))
    client = logged_in(viewer)

    assert listed(client, "/admin/surveys/survey/") == {lab_a_survey.pk}
    page = client.get(f"/admin/surveys/survey/{lab_a_survey.pk}/change/")
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert client.get(f"/admin/results/surveyreport/{lab_a_survey.pk}/report/").status_code == 200
    assert client.get("/admin/iri_worker/targetphoto/add/").status_code == 403
    assert client.post(f"/admin/surveys/survey/{lab_a_survey.pk}/change/", {"title": "mine now"}).status_code == 403
    assert client.post(f"/admin/results/surveyreport/{lab_a_survey.pk}/report/proxy", {"metric": "ssim"}).status_code == 403
    client.post("/admin/surveys/survey/", {"action": "publish", "_selected_action": [lab_a_survey.pk]})

    lab_a_survey.refresh_from_db()
    assert lab_a_survey.status == Survey.Status.DRAFT and lab_a_survey.title == "Lab A's study"
    assert not OperationRun.objects.exists()


def test_an_action_on_a_mixed_selection_touches_only_the_labs_where_the_user_is_a_researcher(
        django_user_model, team, lab_b, iri_set, lab_b_survey):
    user = staff_member(django_user_model, "mia", a=(team, Role.RESEARCHER), b=(lab_b, Role.VIEWER))
    a_job = IriJob.objects.create(team=team, spec=iri_set.spec, status=IriJob.Status.QUEUED)
    b_job = IriJob.objects.create(team=lab_b, spec=iri_set.spec, status=IriJob.Status.QUEUED)
    client = logged_in(user)
    assert {a_job.pk, b_job.pk} <= listed(client, "/admin/iri_worker/irijob/")  # a viewer of Lab B sees its jobs

    client.post("/admin/iri_worker/irijob/", {"action": "cancel_jobs", "_selected_action": [a_job.pk, b_job.pk]})

    a_job.refresh_from_db(), b_job.refresh_from_db()
    assert a_job.status == IriJob.Status.CANCELLED and b_job.status == IriJob.Status.QUEUED
    (entry,) = AuditEntry.objects.filter(action="iri_job.cancel")
    assert entry.object_id == str(a_job.pk) and entry.team == team and entry.username == "mia"


def test_the_forms_offer_only_the_labs_own_photos_and_sets(a_researcher, iri_set, lab_b_survey):
    client = logged_in(a_researcher)
    b_photo = TargetPhoto.objects.filter(team=lab_b_survey.team).first()

    job_form = client.get("/admin/iri_worker/irijob/add/").context["adminform"].form
    assert set(job_form.fields["target_photos"].queryset) == set(TargetPhoto.objects.filter(team=iri_set.team))
    assert set(job_form.fields["seed_photo"].queryset) == set(TargetPhoto.objects.filter(team=iri_set.team))
    survey_form = client.get("/admin/surveys/survey/add/").context["adminform"].form
    assert list(survey_form.fields["iri_jobs"].queryset) == [iri_set]
    refused = client.post("/admin/iri_worker/irijob/add/", {"name": "x", "target_photos": [b_photo.pk], "backbone": "tiny_cnn",
                                                            "seed_kind": "super-noise", "steps": 5, "step_size": 0.5, "rng_seed": 0})
    assert refused.status_code == 200 and "target_photos" in refused.context["adminform"].form.errors
    assert IriJob.objects.count() == 2


def test_a_new_photo_goes_to_the_users_only_lab_or_to_the_lab_they_choose(django_user_model, team, lab_b):
    single = logged_in(staff_member(django_user_model, "sol", a=(team, Role.RESEARCHER)))
    assert "team" not in single.get("/admin/iri_worker/targetphoto/add/").context["adminform"].form.fields
    assert single.post("/admin/iri_worker/targetphoto/add/", {"name": "dog", "photo": png()}).status_code == 302
    assert TargetPhoto.objects.get(name="dog").team == team

    both = logged_in(staff_member(django_user_model, "bo", a=(team, Role.RESEARCHER), b=(lab_b, Role.OWNER)))
    unsure = both.post("/admin/iri_worker/targetphoto/add/", {"name": "cat", "photo": png()})
    assert unsure.status_code == 200 and "team" in unsure.context["adminform"].form.errors
    assert both.post("/admin/iri_worker/targetphoto/add/", {"name": "cat", "photo": png(), "team": lab_b.pk}).status_code == 302
    assert TargetPhoto.objects.get(name="cat").team == lab_b
    assert list(AuditEntry.objects.filter(action="photo.create").values_list("username", "team__name")) == [("bo", "Lab B"), ("sol", "Lab A")]


def test_a_checkpoint_is_stored_only_when_the_whole_form_is_valid(django_user_model, team, lab_b):
    client = logged_in(staff_member(django_user_model, "cal", a=(team, Role.RESEARCHER), b=(lab_b, Role.RESEARCHER)))
    weights = io.BytesIO(tiny_weights())
    weights.name = "half.pt"

    refused = client.post("/admin/iri_worker/checkpoint/add/", {"name": "half", "backbone": "tiny_cnn", "weights": weights})

    assert refused.status_code == 200 and "team" in refused.context["adminform"].form.errors  # the weights were fine
    assert not Checkpoint.objects.exists()
    weights.seek(0)
    stored = client.post("/admin/iri_worker/checkpoint/add/", {"name": "half", "backbone": "tiny_cnn", "weights": weights, "team": team.pk})
    assert stored.status_code == 302 and Checkpoint.objects.get().team == team


def test_owners_read_their_labs_audit_log_and_nobody_elses(django_user_model, team, lab_b, researcher):
    owner = staff_member(django_user_model, "olga", a=(team, Role.OWNER))
    member = staff_member(django_user_model, "rex", a=(team, Role.RESEARCHER))
    audit_record(actor=Actor.of_user(member), action="survey.publish", team=team, details={})
    audit_record(actor=Actor.of_user(researcher), action="survey.publish", team=lab_b, details={})

    assert {e.team for e in logged_in(owner).get("/admin/teams/auditentry/").context["cl"].result_list} == {team}
    assert logged_in(member).get("/admin/teams/auditentry/").status_code == 403
    assert len(listed(logged_in(researcher), "/admin/teams/auditentry/")) == 2  # the superuser reads them all
    filtered = logged_in(owner).get("/admin/teams/auditentry/?q=rex")
    assert [e.username for e in filtered.context["cl"].result_list] == ["rex"]


@pytest.fixture
def lab_a_members(django_user_model, team, lab_b):
    """Lab A: olga owns it, rex researches, vic views; nia is in no team yet; sam is in Lab B only."""
    users = {name: staff_member(django_user_model, name, a=(team, role))
             for name, role in [("olga", Role.OWNER), ("rex", Role.RESEARCHER), ("vic", Role.VIEWER)]}
    users["nia"] = staff_member(django_user_model, "nia")
    users["nia"].email = "Nia.Newcomer@example.org"
    users["nia"].save()
    users["sam"] = staff_member(django_user_model, "stranger-sam", b=(lab_b, Role.OWNER))
    return users


def members_form(client, team) -> tuple[str, dict]:
    """The team's page and its form as rendered (rows of members included), ready to be changed and posted."""
    url = f"/admin/teams/team/{team.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    return url, rendered_form(page)


def row(form: dict, user) -> str:
    """The prefix of the user's row in the members form."""
    membership = Membership.objects.get(user=user)
    (key,) = [k for k, v in form.items() if re.fullmatch(r"memberships-\d+-id", k) and v == [str(membership.pk)]]
    return key.removesuffix("-id")


def new_row(form: dict, member: str, role: str) -> dict:
    i = int(form["memberships-TOTAL_FORMS"][0])
    added = {f"memberships-{i}-member": [member], f"memberships-{i}-role": [role]}
    return {**form, **added, "memberships-TOTAL_FORMS": [str(i + 1)]}


def members(team) -> dict[str, str]:
    return dict(Membership.objects.filter(team=team).values_list("user__username", "role"))


def test_an_owner_sees_changes_and_removes_the_members_of_their_lab(team, lab_a_members):
    client = logged_in(lab_a_members["olga"])
    url, form = members_form(client, team)
    shown = client.get(url).context["inline_admin_formsets"][0].formset.queryset
    assert {m.user.username for m in shown} == {"olga", "rex", "vic"}

    form[f"{row(form, lab_a_members['rex'])}-role"] = [Role.VIEWER]
    form[f"{row(form, lab_a_members['vic'])}-DELETE"] = ["on"]
    saved = client.post(url, form)

    assert saved.status_code == 302, saved.context["inline_admin_formsets"][0].formset.errors
    assert members(team) == {"olga": Role.OWNER, "rex": Role.VIEWER}
    logged = set(AuditEntry.objects.filter(team=team).values_list("action", "details__user"))
    assert logged == {("membership.set", "rex"), ("membership.delete", "vic"), ("team.change", None)}


def test_researchers_and_viewers_see_the_members_but_change_nothing(team, lab_a_members):
    for name in ("rex", "vic"):
        client = logged_in(lab_a_members[name])
        page = client.get(f"/admin/teams/team/{team.pk}/change/")
        form = rendered_form(page)

        shown = set(re.findall(r'class="field-member">\s*<p>([\w-]+)</p>', page.content.decode()))
        assert page.status_code == 200 and shown == {"olga", "rex", "vic"}
        assert not any(k.endswith("-role") for k in form)  # nothing to edit
        assert client.post(f"/admin/teams/team/{team.pk}/change/", new_row(form, "nia", Role.OWNER)).status_code == 403
    assert members(team) == {"olga": Role.OWNER, "rex": Role.RESEARCHER, "vic": Role.VIEWER}


def test_the_last_owner_can_be_neither_demoted_nor_removed_but_may_hand_over(team, lab_a_members):
    olga, rex = lab_a_members["olga"], lab_a_members["rex"]
    client = logged_in(olga)
    url, form = members_form(client, team)
    mine = row(form, olga)

    demoted = client.post(url, {**form, f"{mine}-role": [Role.RESEARCHER]})
    removed = client.post(url, {**form, f"{mine}-DELETE": ["on"]})

    for refused in (demoted, removed):
        assert refused.status_code == 200
        errors = refused.context["inline_admin_formsets"][0].formset.non_form_errors()
        assert errors == [LAST_OWNER.format(team="Lab A")]
    assert members(team)["olga"] == Role.OWNER
    handed_over = client.post(url, {**form, f"{row(form, rex)}-role": [Role.OWNER], f"{mine}-DELETE": ["on"]})
    assert handed_over.status_code == 302 and members(team) == {"rex": Role.OWNER, "vic": Role.VIEWER}


def test_the_membership_services_keep_the_last_owner_for_the_api_and_the_admin_alike(team, lab_a_members):
    olga, rex = lab_a_members["olga"], lab_a_members["rex"]

    with pytest.raises(ApplicationError, match="without an owner"):
        membership_set(team=team, user=olga, role=Role.VIEWER)
    with pytest.raises(ApplicationError, match="without an owner"):
        membership_remove(team=team, user=olga)
    membership_set(team=team, user=rex, role=Role.OWNER)

    assert membership_remove(team=team, user=olga) and members(team)["rex"] == Role.OWNER


def test_the_member_picker_finds_a_user_by_exact_username_or_e_mail_and_lists_nobody(team, lab_a_members):
    client = logged_in(lab_a_members["olga"])
    url, form = members_form(client, team)
    page = client.get(url).content.decode()
    assert "stranger-sam" not in page and "Newcomer" not in page and "memberships-__prefix__-user" not in page

    for typed in ("ni", "nia@example", "stranger"):
        refused = client.post(url, new_row(form, typed, Role.VIEWER))
        errors = refused.context["inline_admin_formsets"][0].formset.errors
        assert errors[-1] == {"member": [UNKNOWN_MEMBER.format(value=typed)]}, errors
    again = client.post(url, new_row(form, "rex", Role.VIEWER)).context["inline_admin_formsets"][0].formset.errors
    assert again[-1] == {"member": [ALREADY_MEMBER.format(user="rex")]}
    assert client.post(url, new_row(form, "nia.newcomer@EXAMPLE.org", Role.VIEWER)).status_code == 302
    assert client.post(url, new_row(members_form(client, team)[1], "stranger-sam", Role.RESEARCHER)).status_code == 302

    assert members(team) == {"olga": Role.OWNER, "rex": Role.RESEARCHER, "vic": Role.VIEWER, "nia": Role.VIEWER,
                             "stranger-sam": Role.RESEARCHER}
    assert logged_in(lab_a_members["olga"]).get("/admin/teams/team/add/").status_code == 403  # superusers create teams


def test_a_superuser_creates_a_team_and_names_its_first_owner(researcher, lab_a_members):
    client = logged_in(researcher)
    form = rendered_form(client.get("/admin/teams/team/add/"))

    created = client.post("/admin/teams/team/add/", {**new_row(form, "nia", Role.OWNER), "name": "Lab N"})

    assert created.status_code == 302
    assert members(Team.objects.get(name="Lab N")) == {"nia": Role.OWNER}


def test_sessions_answers_and_reports_are_never_added_by_hand(researcher):
    client = logged_in(researcher)  # a superuser: no role could add them either

    for page in ("surveys/participant", "surveys/response", "results/surveyreport"):
        assert client.get(f"/admin/{page}/add/").status_code == 403, page
        assert not client.get(f"/admin/{page}/").context["has_add_permission"], page


def test_staff_see_and_revoke_only_their_own_api_token(django_user_model, team, researcher):
    ada = staff_member(django_user_model, "ada", a=(team, Role.RESEARCHER))
    own, other = Token.objects.create(user=ada), Token.objects.create(user=researcher)
    client = logged_in(ada)

    assert {t.key for t in client.get("/admin/authtoken/tokenproxy/").context["cl"].result_list} == {own.key}
    assert client.post(f"/admin/authtoken/tokenproxy/{researcher.pk}/delete/", {"post": "yes"}).status_code == 302
    assert Token.objects.filter(key=other.key).exists()
    assert client.post(f"/admin/authtoken/tokenproxy/{ada.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Token.objects.filter(key=own.key).exists()
    assert AuditEntry.objects.filter(action="token.revoke", username="ada").count() == 1


def test_the_proxy_runs_in_a_real_worker_and_the_report_page_shows_how_far_it_got(celery_worker_process, django_user_model, live_survey):
    user = staff_member(django_user_model, "ada", a=(live_survey.team, Role.RESEARCHER))
    client = logged_in(user)

    asked = client.post(f"/admin/results/surveyreport/{live_survey.pk}/report/proxy", {"metric": "ssim"})

    assert asked.status_code == 302
    run = OperationRun.objects.get(subject_id=live_survey.pk, kind="proxy")
    assert run.subject == live_survey and run.team == live_survey.team
    wait_for(lambda: OperationRun.objects.filter(pk=run.pk, status=OperationRun.Status.DONE).exists())
    run.refresh_from_db()
    assert run.progress == 1.0 and run.result == {"trials": 3} and run.created_by == user
    assert TrialProxyChoice.objects.filter(trial__survey=live_survey, metric="ssim").count() == 3
    page = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/").content.decode()
    assert "3 trials computed" in page and "100 %" in page
    assert AuditEntry.objects.filter(action="survey.proxy", team=live_survey.team, details__metric="ssim").exists()
