"""Every admin page, as every role, with every kind of id: none answers with a server error.

The pages are walked from the URL resolvers, so a new admin page is crawled without anyone listing it. Each
route's id is filled with Lab A's object, Lab B's, one that does not exist and malformed ones, and every
page is fetched as a superuser and as Lab A's owner, researcher and viewer. Then the form the page rendered is
POSTed back as a browser would send it (another id's page gets the form of its own object's page), each POST
in a savepoint undone afterwards, so the next page still finds every object where it was.

A model whose admin pages this story has no object for, or a route parameter it has no value for, fails the
crawl with a sentence saying what to add here."""
import re
import time
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token, TokenProxy

from iri_worker.demo_photos import bundled_photos
from iri_worker.models import Checkpoint, IriJob, TargetPhoto
from iri_worker.services import checkpoint_create, target_photo_create
from operations.models import OperationRun
from results.models import SurveyReport
from surveys.models import Participant, Response, Survey
from surveys.services import survey_create, survey_publish
from teams.actors import Actor
from teams.models import AuditEntry, Membership, Role, Team
from teams.services import audit_record, membership_set, team_create
from tests.conftest import finished_iri_set
from tests.iri_worker.test_checkpoints import tiny_weights
from tests.results.helpers import session_answer, target

pytestmark = pytest.mark.django_db

MISSING_ID = "987654321"
MALFORMED_IDS = ("not-an-id", "0x1", "99999999999999999999")  # the last overflows a bigint
ID_PARAMS = {"object_id", "pk", "id"}
# Values for route parameters that are not an object's id, by (URL name, parameter).
ROUTE_VALUES = {
    ("results_surveyreport_plot", "name"): "alignment",
    ("results_surveyreport_plot", "fmt"): "svg",
    ("results_surveyreport_export", "name"): "answers.csv",
    ("app_list", "app_label"): "surveys",
    (None, "url"): "nowhere/",  # the admin's catch-all for unknown URLs
}
NO_POST = {"logout"}  # posting it would end the crawl's session


# --------------------------------------------------------------------------------------------- the cast


def lab_objects(team: Team, owner: User, photo_names: list[str]) -> dict:
    """One object of every model the admin shows, all of them the lab's."""
    photos = [target_photo_create(team=team, name=n, data=bundled_photos()[n]) for n in photo_names]
    job = finished_iri_set(photos)
    survey = survey_publish(survey=survey_create(slug=f"crawl-{team.pk}", title="t", iri_jobs=[job]))
    participant = session_answer(survey, pid=f"P-{team.pk}", choose=target, limit=1, complete=False)
    Token.objects.create(user=owner)
    return {
        TargetPhoto: photos[0],
        Checkpoint: checkpoint_create(team=team, name="w", backbone="tiny_cnn", data=tiny_weights()),
        IriJob: job,
        Survey: survey,
        SurveyReport: SurveyReport.objects.get(pk=survey.pk),
        Participant: participant,
        Response: Response.objects.filter(participant=participant).first(),
        Team: team,
        Membership: Membership.objects.get(team=team, user=owner),
        AuditEntry: audit_record(actor=Actor.of_user(owner), action="story.seen", team=team),
        TokenProxy: TokenProxy.objects.get(user=owner),
        User: owner,
        Group: Group.objects.create(name=f"{team.name} group"),
        OperationRun: OperationRun.objects.create(
            team=team, kind="bots", subject_type=ContentType.objects.get_for_model(survey), subject_id=survey.pk,
            status=OperationRun.Status.DONE, progress=1.0, result={"completed": 10}, created_by=owner),
    }


@pytest.fixture
def cast(django_user_model, team):
    """Lab A with an owner, a researcher and a viewer (staff, no superpowers), Lab B with its owner, a superuser
    in no team, and each lab's objects."""
    lab_b = team_create(name="Lab B")
    users = {"superuser": django_user_model.objects.create_user(username="root", is_staff=True, is_superuser=True)}
    for role in (Role.OWNER, Role.RESEARCHER, Role.VIEWER):
        users[role] = django_user_model.objects.create_user(username=f"a-{role}", is_staff=True)
        membership_set(team=team, user=users[role], role=role)
    b_owner = django_user_model.objects.create_user(username="b-owner", is_staff=True)
    membership_set(team=lab_b, user=b_owner, role=Role.OWNER)
    names = list(bundled_photos())
    a, b = lab_objects(team, users[Role.OWNER], names[:2]), lab_objects(lab_b, b_owner, names[2:4])
    return {"users": users, "a": a, "b": b}


# --------------------------------------------------------------------------------------------- the pages


def admin_routes():
    """(route, URL name, model or None) for every URL under /admin/, walked from the project's URL resolvers."""
    by_prefix = {f"{m._meta.app_label}/{m._meta.model_name}/": m for m in admin.site._registry}

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern.name

    for route, name in walk(get_resolver().url_patterns, ""):
        if route.startswith("admin/"):
            route = route.removeprefix("admin/")
            yield route, name, next((m for p, m in by_prefix.items() if route.startswith(p)), None)


PARAM = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)")


def route_urls(route: str, name: str | None, model, cast) -> list[tuple[str, str]]:
    """(id kind, URL) for a route: one per kind of id where it takes one, else the one URL."""
    params = [a or b for a, b in PARAM.findall(route)]
    model = model or (Survey if "object_id" in params else None)  # view_on_site: a survey
    ids = {"none": None}
    if ID_PARAMS & set(params):
        assert model in cast["a"], f"admin route {route}: tell this story which {getattr(model, '__name__', 'object')} to try it with"
        ids = {"own": url_id(cast["a"][model]), "other team's": url_id(cast["b"][model]), "missing": MISSING_ID,
               **{m: m for m in MALFORMED_IDS}}

    def fill(object_id):
        def value(match):
            param = match.group(1) or match.group(2)
            if param in ID_PARAMS:
                return object_id
            if param == "content_type_id":
                return str(ContentType.objects.get_for_model(model).pk)
            known = ROUTE_VALUES.get((name, param))
            assert known, f"admin route {route}: tell this story a value for <{param}> (ROUTE_VALUES)"
            return known

        return "/admin/" + PARAM.sub(value, route).replace("^", "").replace("$", "")

    return [(kind, fill(object_id)) for kind, object_id in ids.items()]


def url_id(obj) -> str:
    return str(obj.user_id if isinstance(obj, TokenProxy) else obj.pk)  # the token admin's URLs carry the user's id


# --------------------------------------------------------------------------------------------- forms as rendered


class PostForms(HTMLParser):
    """The fields of each POST form that submits to the page itself, as a browser would send them unchanged."""

    def __init__(self):
        super().__init__()
        self.forms, self._form, self._select, self._textarea = [], None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            posts_here = a.get("method", "get").lower() == "post" and not a.get("action")
            self._form = {"data": [], "submitted": False} if posts_here else None
            if posts_here:
                self.forms.append(self._form)
        elif self._form is None or ("name" not in a or "disabled" in a) and tag != "option":
            return  # a browser sends neither nameless nor disabled fields
        elif tag == "input":
            kind = a.get("type", "text").lower()
            if kind in ("submit", "image"):
                if not self._form["submitted"]:  # the first button: what pressing Enter sends
                    self._form["submitted"] = True
                    self._form["data"].append((a["name"], a.get("value", "")))
            elif kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._form["data"].append((a["name"], a.get("value", "on")))
            elif kind not in ("file", "button", "reset"):
                self._form["data"].append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self._select = {"name": a["name"], "multiple": "multiple" in a, "first": None, "chosen": []}
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            self._select["first"] = value if self._select["first"] is None else self._select["first"]
            if "selected" in a:
                self._select["chosen"].append(value)
        elif tag == "textarea":
            self._textarea = [a["name"], ""]

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select" and self._select is not None:
            s, self._select = self._select, None
            chosen = s["chosen"] or ([] if s["multiple"] or s["first"] is None else [s["first"]])
            self._form["data"] += [(s["name"], v) for v in chosen]
        elif tag == "textarea" and self._textarea is not None:
            self._form["data"].append((self._textarea[0], self._textarea[1].removeprefix("\n")))
            self._textarea = None


def rendered_form(response) -> dict | None:
    """The page's own POST form as {name: [values]}, or None when it renders none."""
    if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
        return None
    parser = PostForms()
    parser.feed(response.content.decode())
    if not parser.forms:
        return None
    data = {}
    for name, value in parser.forms[0]["data"]:
        data.setdefault(name, []).append(value)
    return data


class Undo(Exception):
    def __init__(self, response):
        self.response = response


def posted(client: Client, url: str, data: dict):
    """POST, then undo whatever it wrote, so the crawl's objects stay as they were for the next page."""
    try:
        with transaction.atomic():
            raise Undo(client.post(url, data))
    except Undo as undo:
        return undo.response


def status(response) -> int:
    """The response's status; an export that fails while it streams (after its 200 went out) counts as a 500."""
    if response.streaming:
        try:
            b"".join(response.streaming_content)
        except Exception:
            return 500
    return response.status_code


# --------------------------------------------------------------------------------------------- the crawl


def test_no_admin_page_answers_with_a_server_error_whoever_asks_and_whatever_the_id(cast):
    started, failures, urls, requests = time.monotonic(), [], set(), 0
    routes = list(admin_routes())
    for model in admin.site._registry:
        assert model in cast["a"], f"tell this story which {model.__name__} to crawl its admin pages with"

    for role, user in cast["users"].items():
        client = Client(raise_request_exception=False)
        client.force_login(user)
        for route, name, model in routes:
            own_form = None
            for kind, url in route_urls(route, name, model, cast):
                urls.add(url)
                page = client.get(url)
                form = rendered_form(page)
                own_form = form if kind in ("own", "none") else own_form
                sent = [("GET", page)]
                if name not in NO_POST:
                    sent.append(("POST", posted(client, url, form or own_form or {})))
                for method, response in sent:
                    requests, code = requests + 1, status(response)
                    if code >= 500:
                        failures.append(f"{role} {method} {url} ({kind} id): {code}")

    print(f"admin crawl: {len(routes)} routes, {len(urls)} URLs x {len(cast['users'])} roles, GET and POST: "
          f"{requests} requests in {time.monotonic() - started:.1f} s")
    assert not failures, "server errors:\n" + "\n".join(failures)
