"""Researcher endpoints for surveys: team members only, scoped by teams.selectors (participants' are in apis.py)."""
import functools
import re

from django.urls import reverse
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from backend.exceptions import ApplicationError
from iri_worker.models import IriJob
from teams.actors import Actor
from teams.apis import TeamScopedApi
from teams.fields import TeamScopedPrimaryKeyField
from teams.models import Role

from .models import Survey
from .planning import survey_plan
from .selectors import survey_monitor
from .services import survey_create_start, survey_publish
from .services.build_runs import survey_build_error, survey_build_state
from .services.adaptive import adaptive_outcome
from .task_types import TaskType, task_type_get, task_types
from .task_types.fields import design_fields

UNKNOWN_SET = "Unknown IRI set id: {pk_value}."
ACTOR_NOT_AN_OPTION = "actor: not a survey option; the audit log names who creates the survey (the caller)."


class SurveyOutputSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    team = serializers.IntegerField(source="team_id")
    title = serializers.CharField()
    status = serializers.CharField()
    task_type = serializers.CharField()
    foil_rule = serializers.CharField()
    cluster_variant = serializers.CharField()
    iri_jobs = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    trials = serializers.IntegerField(source="trials.count")
    trial_lists = serializers.IntegerField(source="trial_lists.count")
    ratings_per_list = serializers.IntegerField()
    catch_trials = serializers.IntegerField()
    practice_trials = serializers.IntegerField()
    resume_policy = serializers.CharField()
    time_limit_minutes = serializers.IntegerField()
    max_participants = serializers.IntegerField(allow_null=True)
    size_policy = serializers.CharField()
    iri_max_percentile = serializers.FloatField(allow_null=True)
    iri_require_label_match = serializers.BooleanField()
    one_side_max_fraction = serializers.FloatField(allow_null=True)
    one_side_min_trials = serializers.IntegerField()
    retention_days = serializers.IntegerField(allow_null=True)
    categories = serializers.ListField(child=serializers.CharField(), help_text="classification: the buttons' categories, in order")
    fixation_ms = serializers.IntegerField()
    image_ms = serializers.IntegerField(allow_null=True)
    mask_ms = serializers.IntegerField()
    screening_trials = serializers.IntegerField()
    desktop_only = serializers.BooleanField()
    precision_goal = serializers.FloatField(allow_null=True)
    precision_every = serializers.IntegerField()
    adaptive_state = serializers.JSONField(help_text="Adaptive collection: the latest estimate per IRI set and whether collection stopped.")
    build_report = serializers.JSONField(help_text="What the builder did: images resized, IRIs left out and why.")
    build = serializers.SerializerMethodField(
        help_text="building (a worker builds the trials), built, or failed (build_error says why; create the survey "
                  "again, same slug, to replace it).")
    build_error = serializers.SerializerMethodField(help_text="Why the build failed (empty unless it did).")
    url = serializers.SerializerMethodField()

    def get_build(self, survey) -> str:
        return survey_build_state(survey=survey)

    def get_build_error(self, survey) -> str:
        return survey_build_error(survey=survey)

    def get_url(self, survey) -> str:
        return reverse("survey-page", kwargs={"slug": survey.slug})


class SurveyScopedApi(TeamScopedApi):
    """An endpoint about one survey, named by its slug in the URL."""

    queryset = Survey.objects
    lookup_field = "slug"


@functools.cache
def survey_create_serializer(task: TaskType) -> type[serializers.Serializer]:
    """The research API's input for a new survey of a task type: what names it, and the options of its typed design
    (surveys.task_types: their types, bounds, choices and help come from there, as does the schema)."""
    fields = {
        "slug": serializers.SlugField(max_length=64),
        "title": serializers.CharField(max_length=200),
        "iri_jobs": TeamScopedPrimaryKeyField(many=True, allow_empty=False, queryset=IriJob.objects,
                                              error_messages={"does_not_exist": UNKNOWN_SET}),
        "task_type": serializers.ChoiceField(choices=[(task.name, task.label)], default=task.name),
        **design_fields(task),
    }
    name = "SurveyCreate" + "".join(part.capitalize() for part in re.split(r"[^a-zA-Z0-9]+", task.name))
    return type(name, (serializers.Serializer,), fields)


class SurveyCreateApi(TeamScopedApi):
    """Researchers: a DRAFT survey of a task type from finished IRI sets. The choices are checked and the survey
    stored at once (201, `build` "building"); a worker builds its trials, and GET /api/surveys/<slug> shows `build`
    "built" (or "failed") when it is done. Publishing before is refused (409)."""

    roles = {"POST": Role.RESEARCHER}

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="SurveyCreate", resource_type_field_name="task_type",
            serializers=lambda: {task.name: survey_create_serializer(task) for task in task_types()}),
    )
    def post(self, request):
        given = request.data.get("task_type", Survey.TaskType.TWO_AFC) if hasattr(request.data, "get") else Survey.TaskType.TWO_AFC
        data = survey_create_serializer(task_type_get(given))(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        jobs = list(dict.fromkeys(fields.pop("iri_jobs")))  # an id given twice is one set
        self.get_team(team_id=jobs[0].team_id)  # a survey belongs to its IRI sets' team
        # what the task type's design does not take is refused by it, naming the option (survey_create)
        others = {key: request.data[key] for key in request.data if key not in data.fields}
        if "actor" in others:  # survey_create_start's own keyword: who creates the survey is the caller, not the body
            raise ApplicationError(ACTOR_NOT_AN_OPTION, extra={"field": "actor"})
        survey = survey_create_start(iri_jobs=jobs, **fields, **others, actor=Actor.of_request(request))
        return Response(SurveyOutputSerializer(survey).data, status=status.HTTP_201_CREATED)


class SurveyDetailApi(SurveyScopedApi):
    roles = {"GET": Role.VIEWER}

    def get(self, request, slug: str):
        return Response(SurveyOutputSerializer(self.get_object()).data)


class SurveyPublishApi(SurveyScopedApi):
    roles = {"POST": Role.RESEARCHER}

    def post(self, request, slug: str):
        survey = survey_publish(survey=self.get_object(), actor=Actor.of_request(request))
        return Response(SurveyOutputSerializer(survey).data)


class SurveyMonitorApi(SurveyScopedApi):
    """Researchers: the live monitor (participants' states, fill of each list against N, exclusions)."""

    roles = {"GET": Role.VIEWER}

    def get(self, request, slug: str):
        survey = self.get_object()
        pilot = request.query_params.get("mode") == "pilot"
        # Adaptive collection: why it ended (or that it goes on) and which IRI sets missed the goal, by how much.
        outcome = None if pilot else adaptive_outcome(survey=survey)
        return Response({**survey_monitor(survey=survey, pilot=pilot), "collection": outcome})


class SurveyPlanApi(SurveyScopedApi):
    """The budget planner: participants and cost to bring every IRI set's 95 % CI half-width to half_width, under
    fixed N and adaptive allocation, from the survey's pilot or the figures given (surveys.planning.survey_plan)."""

    roles = {"GET": Role.VIEWER}
    # Query parameters whose name differs from the planner's, so that a 400 names the one the caller sent.
    PARAMS = {"rate_per_hour": "rate", "cap_participants": "cap"}

    @extend_schema_serializer(component_name="SurveyPlanFilter")
    class FilterSerializer(serializers.Serializer):
        half_width = serializers.FloatField(required=False, help_text="the goal, in (0, 0.5); default: the survey's precision goal, else 0.05")
        rate = serializers.FloatField(required=False, help_text="pay per hour in PROLIFIC_CURRENCY; default: Prolific's recommended (£9, $12); below its minimum (£6, $8) a warning")
        fee = serializers.FloatField(default=0.0, help_text="the platform's fee as a fraction of the pay (0.33 = 33 %)")
        seconds_per_trial = serializers.FloatField(required=False, help_text="default: the pilot's")
        seconds_per_participant = serializers.FloatField(required=False, help_text="the fixed part; default: the pilot's")
        cap = serializers.IntegerField(required=False, help_text="cap on participants; default: the survey's max_participants")

    @extend_schema_serializer(component_name="SurveyPlan")
    class OutputSerializer(serializers.Serializer):
        survey = serializers.CharField()
        half_width = serializers.FloatField()
        rate_per_hour = serializers.FloatField()
        currency = serializers.CharField(help_text="PROLIFIC_CURRENCY: GBP or USD")
        currency_symbol = serializers.CharField()
        fee = serializers.FloatField()
        assumptions = serializers.DictField(help_text="per assumption: value, and source (entered / pilot / default / survey)")
        pilot = serializers.DictField(help_text="completed pilot sessions, median session seconds, seconds per trial and per participant")
        conditions = serializers.ListField(
            child=serializers.DictField(), help_text="per IRI set: p and its source, trials, answers needed, N needed")
        seconds_per_participant = serializers.FloatField()
        pay_per_participant = serializers.FloatField()
        cost_per_participant = serializers.FloatField(help_text="pay with the platform's fee")
        fixed = serializers.DictField(help_text="answers, participants, ratings_per_list, cost, reachable")
        adaptive = serializers.DictField(help_text="answers, participants, ratings_per_list, cost, reachable")
        warnings = serializers.ListField(child=serializers.CharField())

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer)
    def get(self, request, slug: str):
        survey = self.get_object()
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        v = filters.validated_data
        try:
            plan = survey_plan(
                survey=survey, half_width=v.get("half_width", survey.precision_goal or 0.05), rate_per_hour=v.get("rate"),
                fee=v["fee"], seconds_per_trial=v.get("seconds_per_trial"),
                seconds_per_participant=v.get("seconds_per_participant"), cap_participants=v.get("cap"),
            )
        except ApplicationError as exc:
            field = exc.extra.get("field", "")
            param = self.PARAMS.get(field, field)
            message = param + exc.message[len(field):] if field and exc.message.startswith(field) else exc.message
            raise ApplicationError(message, extra={**exc.extra, "field": param}) from exc
        return Response(plan)
