"""Results API: the report JSON, per-answer rows (paginated), CSV exports (streamed) and the analysis plan."""
import json
from collections.abc import Iterator
from itertools import islice

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from backend.exceptions import ApplicationError
from surveys.models import Survey
from teams.actors import Actor
from teams.apis import TeamScopedApi
from teams.models import Role
from teams.services import audit_record

from .export_answers import ANSWER_COLUMNS, answer_rows
from .exports import EXPORTS, export_stream
from .plan_export import plan_files
from .plans import PLAN_EDITABLE_FIELDS, plan_change, plan_report, plan_versions
from .services import alignment_report
from .survey_data import exclusion_rules_for, survey_data_load


class ProxyScoreSerializer(serializers.Serializer):
    alignment = serializers.FloatField(allow_null=True)
    n_items = serializers.IntegerField()
    error_consistency = serializers.DictField(help_text="kappa, c_obs, c_exp, p_1 (proxy), p_2 (human majority), n_trials")


class CeilingSerializer(serializers.Serializer):
    ceiling = serializers.FloatField(allow_null=True, help_text="split-half r stepped up with Spearman-Brown")
    split_half_r = serializers.FloatField(allow_null=True, help_text="mean Pearson r of per-item accuracy between halves")
    n_items = serializers.IntegerField()
    n_splits = serializers.IntegerField()
    note = serializers.CharField(allow_blank=True, help_text="why there is no ceiling (not enough data)")


class KappaSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True, help_text="Fleiss' kappa over the categories below")
    categories = serializers.ListField(
        child=serializers.CharField(),
        help_text="what a rating is: chose_target / chose_foil (2AFC), chose_right_reference / chose_other_reference (clustering)",
    )
    items = serializers.IntegerField(help_text="items with at least two ratings (the ones kappa uses)")
    raters_per_item = serializers.DictField(allow_null=True, help_text="min, median, max over those items")
    note = serializers.CharField(allow_blank=True, help_text="why kappa is missing")


class ConditionSerializer(serializers.Serializer):
    condition = serializers.CharField(help_text="backbone · checkpoint · training · recipe · seed kind · layer")
    iri_set = serializers.IntegerField()
    iri_sets = serializers.ListField(child=serializers.IntegerField())
    name = serializers.CharField()
    backbone = serializers.CharField()
    checkpoint = serializers.CharField()
    training = serializers.CharField()
    recipe = serializers.CharField()
    seed_kind = serializers.CharField()
    layer = serializers.CharField()
    chance = serializers.FloatField(allow_null=True)
    alignment = serializers.FloatField(allow_null=True, help_text="share of included main-trial answers choosing the target")
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    wilson_low = serializers.FloatField(allow_null=True)
    wilson_high = serializers.FloatField(allow_null=True)
    n_answers = serializers.IntegerField()
    n_correct = serializers.IntegerField()
    n_participants = serializers.IntegerField()
    n_items = serializers.IntegerField()
    n_answers_before_exclusion = serializers.IntegerField()
    fleiss_kappa = KappaSerializer(help_text="agreement between raters about being right, this condition's items")
    ceiling = CeilingSerializer(help_text="this condition's split-half human ceiling")
    proxy = serializers.DictField(child=ProxyScoreSerializer())
    note = serializers.CharField(allow_blank=True)


class SurveyScopedApi(TeamScopedApi):
    """An endpoint about one survey's results, named by the survey's slug in the URL."""

    queryset = Survey.objects
    lookup_field = "slug"


class AlignmentReportApi(SurveyScopedApi):
    roles = {"GET": Role.VIEWER}

    @extend_schema_serializer(component_name="AlignmentReportFilter")
    class FilterSerializer(serializers.Serializer):
        n_boot = serializers.IntegerField(min_value=1, max_value=20000, default=1000)
        seed = serializers.IntegerField(default=0)
        catch_min_accuracy = serializers.FloatField(required=False, help_text="default: the survey's threshold")
        rt_floor_ms = serializers.FloatField(required=False, help_text="default: the survey's RT floor")
        include_incomplete = serializers.BooleanField(required=False, default=False, help_text="keep sessions that never completed")
        one_side_max_fraction = serializers.CharField(
            required=False, help_text="a share in (1/k, 1] for k screen positions (2AFC: (0.5, 1]), or 'off'; default: the survey's"
        )
        one_side_min_trials = serializers.IntegerField(required=False, help_text="at least 1; default: the survey's")

    @extend_schema_serializer(component_name="AlignmentReport")
    class OutputSerializer(serializers.Serializer):
        version = serializers.IntegerField(help_text="the report's contract version (results.report.AlignmentReport)")
        survey = serializers.CharField()
        title = serializers.CharField()
        task_type = serializers.CharField()
        foil_rule = serializers.CharField()
        chance = serializers.FloatField(allow_null=True)
        ci = serializers.CharField()
        n_boot = serializers.IntegerField()
        seed = serializers.IntegerField()
        n_answers = serializers.IntegerField()
        n_main_answers = serializers.IntegerField()
        n_included = serializers.IntegerField()
        n_participants = serializers.IntegerField()
        n_items = serializers.IntegerField()
        exclusions = serializers.DictField(help_text="rules, counts per rule, answers/participants excluded")
        agreement = serializers.DictField(
            help_text="fleiss_kappa {value, categories (chose_target / chose_foil), items, raters_per_item, note}, "
                      "items_rated_twice, ceiling (split-half, Spearman-Brown)"
        )
        sides = serializers.DictField(
            help_text="share of main and catch answers per screen position (0 = left) survey-wide, its spread per participant, "
                      "and how many participants the one-sided rule flags"
        )
        design = serializers.DictField(help_text="what the survey builder left out and why, the validity filter, images resized")
        plan = serializers.DictField(
            help_text="the analysis plan: sha256 of the plan in force, frozen_sha256 of the one frozen before the "
                      "data, deviations (version, changed, reason, at, by) and changes made without a version"
        )
        collection = serializers.DictField(
            help_text="the stopping rule (fixed N, or adaptive with its goal and cap, whether and why it stopped) and, "
                      "for adaptive surveys, each condition's design-effect Wilson interval beside its goal"
        )
        recognition = serializers.DictField(
            required=False,
            help_text="classification surveys: per condition and overall, people's accuracy (two-way bootstrap CI), chance, "
                      "the network's accuracy on the same stimuli, the difference, c_obs and error consistency",
        )
        ratings_per_item = serializers.ListField(child=serializers.DictField())
        proxy = serializers.DictField()
        conditions = ConditionSerializer(many=True)
        comparisons = serializers.ListField(child=serializers.DictField(), help_text="a - b with a paired bootstrap CI")
        notes = serializers.ListField(child=serializers.CharField())

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer)
    def get(self, request, slug: str):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = dict(filters.validated_data)
        survey = self.get_object()
        rules = exclusion_rules_for(
            survey=survey,
            catch_min_accuracy=params.pop("catch_min_accuracy", None),
            rt_floor_ms=params.pop("rt_floor_ms", None),
            require_complete=False if params.pop("include_incomplete", False) else None,
            one_side_max_fraction=params.pop("one_side_max_fraction", None),
            one_side_min_trials=params.pop("one_side_min_trials", None),
        )
        return Response(alignment_report(survey=survey, rules=rules, **params))


@extend_schema_serializer(component_name="RawIdsFilter")
class RawIdsFilterSerializer(serializers.Serializer):
    raw_ids = serializers.BooleanField(
        default=False, help_text="Prolific PIDs / MTurk worker IDs instead of the survey's pseudonyms (researchers; audit-logged)"
    )


def _raw_ids_asked(view: TeamScopedApi) -> bool:
    """?raw_ids=1 asks for the real external IDs: researchers and owners only (403 for a viewer)."""
    filters = RawIdsFilterSerializer(data=view.request.query_params)
    filters.is_valid(raise_exception=True)
    raw_ids = filters.validated_data["raw_ids"]
    if raw_ids:
        view.require_role(Role.RESEARCHER)
    return raw_ids


class _RowsOfKnownLength:
    """A row generator the paginator can count and slice, so a page reads no row past its end."""

    def __init__(self, rows: Iterator[dict], length: int):
        self.rows, self.length = rows, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, page: slice) -> list[dict]:
        return list(islice(self.rows, page.start, page.stop))


class AnswerListApi(SurveyScopedApi):
    """Every answer in long format (one row per answer, with its exclusion flags), a page at a time."""

    roles = {"GET": Role.VIEWER}

    class Pagination(LimitOffsetPagination):
        default_limit = 1000
        max_limit = 10000

    pagination_class = Pagination

    @extend_schema_serializer(component_name="AnswerRow")
    class OutputSerializer(serializers.Serializer):
        """One answer in long format."""

        def get_fields(self):
            return {name: serializers.JSONField(read_only=True) for name in ANSWER_COLUMNS}

    @extend_schema(parameters=[RawIdsFilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request, slug: str):
        survey = self.get_object()
        raw_ids = _raw_ids_asked(self)
        if raw_ids:
            audit_record(actor=Actor.of_request(request), action="survey.export", obj=survey,
                         details={"export": "answers", "raw_ids": True})
        data = survey_data_load(survey=survey, raw_ids=raw_ids)
        rows = _RowsOfKnownLength(answer_rows(survey=survey, data=data), length=int(data.answers["trial"].size))
        paginator = self.pagination_class()
        return paginator.get_paginated_response(paginator.paginate_queryset(rows, request, view=self))


class AnswerExportApi(SurveyScopedApi):
    """The long-format CSV (or JSON) of every answer (with its trial kind, timing, mistimed flag and device facts),
    model-vs-human's raw data (one CSV, or a zip of one CSV per subject), or one row per participant, streamed."""

    roles = {"GET": Role.VIEWER}

    @extend_schema(
        parameters=[RawIdsFilterSerializer],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/json"): OpenApiTypes.STR,
                   (200, "application/zip"): OpenApiTypes.BINARY},
    )
    def get(self, request, slug: str, name: str):
        survey = self.get_object()
        if name not in EXPORTS:
            raise ApplicationError(f"Unknown export '{name}'; choose one of: {', '.join(EXPORTS)}.", status_code=404)
        raw_ids = _raw_ids_asked(self)
        details = {"export": name, "raw_ids": True} if raw_ids else {"export": name}
        audit_record(actor=Actor.of_request(request), action="survey.export", obj=survey, details=details)
        content_type, chunks = export_stream(survey=survey, name=name, raw_ids=raw_ids)
        response = StreamingHttpResponse(chunks, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{survey.slug}-{name}"'
        return response


class SurveyAnalysisPlanApi(SurveyScopedApi):
    """The survey's analysis plan, frozen at publish (results.plans): GET the plan, its hash and every deviation;
    POST changes to the survey fields it reads, with a reason once the survey has real answers."""

    roles = {"GET": Role.VIEWER, "POST": Role.RESEARCHER}

    @extend_schema_serializer(component_name="AnalysisPlanChange")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            required=False, allow_blank=True, default="",
            help_text="why the plan changes; required once the survey has a real answer (the change is a deviation)",
        )
        max_participants = serializers.IntegerField(min_value=1, required=False, allow_null=True)
        precision_every = serializers.IntegerField(min_value=1, required=False)
        catch_min_accuracy = serializers.FloatField(min_value=0, max_value=1, required=False)
        rt_floor_ms = serializers.FloatField(min_value=0, required=False)
        rt_floor_max_fraction = serializers.FloatField(min_value=0, max_value=1, required=False)
        one_side_max_fraction = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
        one_side_min_trials = serializers.IntegerField(min_value=1, required=False)
        practice_pass_fraction = serializers.FloatField(min_value=0, max_value=1, required=False)
        screening_pass_fraction = serializers.FloatField(min_value=0, max_value=1, required=False)
        exclude_mistimed = serializers.BooleanField(required=False)
        refill_excluded = serializers.BooleanField(required=False)
        desktop_only = serializers.BooleanField(required=False)
        fixation_ms = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
        image_ms = serializers.IntegerField(min_value=1, max_value=10_000, required=False, allow_null=True)
        mask_ms = serializers.IntegerField(min_value=1, max_value=10_000, required=False)

    @extend_schema_serializer(component_name="AnalysisPlan")
    class OutputSerializer(serializers.Serializer):
        survey = serializers.CharField()
        plan = serializers.DictField(help_text="the report's plan block: sha256, frozen_sha256, deviations, note")
        document = serializers.DictField(help_text="the plan in force (its canonical JSON hashes to plan.sha256)")
        versions = serializers.ListField(child=serializers.DictField(), help_text="version, sha256, deviation, at")
        markdown = serializers.CharField(help_text="the plan as Markdown, for an OSF pre-registration")

    def _output(self, survey: Survey) -> dict:
        versions = plan_versions(survey=survey)
        files = plan_files(survey=survey)
        in_force = versions[-1].canonical if versions else files[f"{survey.slug}-analysis-plan.json"]
        return {
            "survey": survey.slug,
            "plan": plan_report(survey=survey),
            "document": json.loads(in_force),
            "versions": [{"version": v.version, "sha256": v.sha256, "deviation": v.deviation,
                          "at": v.created_at.isoformat()} for v in versions],
            "markdown": files[f"{survey.slug}-analysis-plan.md"],
        }

    @extend_schema(responses=OutputSerializer)
    def get(self, request, slug: str):
        return Response(self._output(self.get_object()))

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, slug: str):
        survey = self.get_object()
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = {k: v for k, v in data.validated_data.items() if k in PLAN_EDITABLE_FIELDS}
        if not values:
            raise ApplicationError(PLAN_NOTHING_TO_CHANGE, extra={"field": "values"})
        if "one_side_max_fraction" in values or "one_side_min_trials" in values:  # the report's own range checks
            exclusion_rules_for(survey=survey, **{k: v for k, v in values.items() if k.startswith("one_side")})
        plan_change(survey=survey, values=values, reason=data.validated_data["reason"], actor=Actor.of_request(request))
        return Response(self._output(survey))


PLAN_NOTHING_TO_CHANGE = "Give at least one field to change: " + ", ".join(PLAN_EDITABLE_FIELDS) + "."
