"""Participant endpoints: no login; a session is named by its unguessable token."""
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.exceptions import ApplicationError

from .images import image_from_token
from iri_worker.models import IriJob

from .models import Participant, Survey
from .selectors import (
    markdown_html,
    participant_answered_ids,
    participant_get,
    participant_progress,
    participant_trials,
    survey_get_live,
)
from .services import (
    participant_complete,
    participant_consent,
    participant_enroll,
    SURVEY_NOT_LIVE,
    response_record,
    survey_create,
    survey_publish,
)

UNKNOWN_SESSION = "Unknown session."


class ParticipantApi(APIView):
    """Base for participant endpoints: open to anyone, no cookies, so no CSRF to carry."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def participant(self, token: str) -> Participant:
        participant = participant_get(token=token)
        if participant is None:
            raise ApplicationError(UNKNOWN_SESSION, status_code=status.HTTP_404_NOT_FOUND)
        return participant


def _completion(participant: Participant) -> dict:
    if participant.completed_at is None:
        return {"completion_code": None, "redirect_url": None}
    code = participant.survey.completion_code
    redirect = f"https://app.prolific.com/submissions/complete?cc={code}" if participant.prolific_pid else None
    return {"completion_code": code, "redirect_url": redirect}


class EnrollApi(ParticipantApi):
    class InputSerializer(serializers.Serializer):
        prolific_pid = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        study_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        session_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        token = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")

    def post(self, request, slug: str):
        survey = survey_get_live(slug=slug)
        if survey is None:
            raise ApplicationError(SURVEY_NOT_LIVE, status_code=status.HTTP_404_NOT_FOUND)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        participant, created = participant_enroll(survey=survey, **data.validated_data)
        body = {
            "token": participant.token,
            "consent_html": markdown_html(survey.consent_md),
            "instructions_html": markdown_html(survey.instructions_md),
            "consented": participant.consented_at is not None,
            "completed": participant.completed_at is not None,
            **participant_progress(participant=participant),
            **_completion(participant),
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ConsentApi(ParticipantApi):
    def post(self, request, token: str):
        participant_consent(participant=self.participant(token))
        return Response({"consented": True})


class TrialListApi(ParticipantApi):
    def get(self, request, token: str):
        participant = self.participant(token)
        trials = participant_trials(participant=participant)
        return Response(
            {"trials": trials, "done": participant_answered_ids(participant=participant), "total": len(trials)}
        )


class TrialNextApi(ParticipantApi):
    def get(self, request, token: str):
        participant = self.participant(token)
        answered = set(participant_answered_ids(participant=participant))
        remaining = [t for t in participant_trials(participant=participant) if t["id"] not in answered]
        return Response({"trial": remaining[0] if remaining else None, **participant_progress(participant=participant)})


class ResponseCreateApi(ParticipantApi):
    class InputSerializer(serializers.Serializer):
        trial = serializers.CharField(max_length=40)
        choice = serializers.ChoiceField(choices=[0, 1])
        rt_ms = serializers.FloatField(min_value=0, max_value=24 * 3600 * 1000)
        idempotency_key = serializers.UUIDField()

    def post(self, request, token: str):
        participant = self.participant(token)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        _, created = response_record(
            participant=participant,
            trial_public_id=v["trial"],
            choice=v["choice"],
            rt_ms=v["rt_ms"],
            idempotency_key=v["idempotency_key"],
        )
        return Response({"saved": True}, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class CompleteApi(ParticipantApi):
    def post(self, request, token: str):
        participant = participant_complete(participant=self.participant(token))
        return Response(_completion(participant))


def survey_page(request, slug: str):
    survey = survey_get_live(slug=slug)
    if survey is None:
        return render(request, "surveys/closed.html", status=404)
    config = {
        "slug": survey.slug,
        "enroll_url": reverse("participant-enroll", kwargs={"slug": survey.slug}),
        "session_base": reverse("participant-session-base"),
    }
    return render(request, "surveys/participant.html", {"survey": survey, "config": config})


def participant_image(request, token: str):
    image = image_from_token(token)
    if image is None:
        raise Http404("No such image.")
    response = FileResponse(image.file.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response


class SurveyOutputSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    title = serializers.CharField()
    status = serializers.CharField()
    foil_rule = serializers.CharField()
    iri_jobs = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    trials = serializers.IntegerField(source="trials.count")
    url = serializers.SerializerMethodField()

    def get_url(self, survey) -> str:
        return reverse("survey-page", kwargs={"slug": survey.slug})


class SurveyCreateApi(APIView):
    """Researchers: build a DRAFT 2AFC survey from finished IRI sets."""

    class InputSerializer(serializers.Serializer):
        slug = serializers.SlugField(max_length=64)
        title = serializers.CharField(max_length=200)
        iri_jobs = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)
        foil_rule = serializers.ChoiceField(choices=Survey.FoilRule.choices, default=Survey.FoilRule.SEED)
        trials_per_participant = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
        consent_md = serializers.CharField(required=False)
        instructions_md = serializers.CharField(required=False)

    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        ids = fields.pop("iri_jobs")
        jobs = list(IriJob.objects.filter(pk__in=ids))
        if len(jobs) != len(set(ids)):
            raise ApplicationError("Unknown IRI set ids: {}.".format(sorted(set(ids) - {j.pk for j in jobs})))
        survey = survey_create(iri_jobs=jobs, **fields)
        return Response(SurveyOutputSerializer(survey).data, status=status.HTTP_201_CREATED)


class SurveyDetailApi(APIView):
    def get(self, request, slug: str):
        return Response(SurveyOutputSerializer(get_object_or_404(Survey, slug=slug)).data)


class SurveyPublishApi(APIView):
    def post(self, request, slug: str):
        survey = survey_publish(survey=get_object_or_404(Survey, slug=slug))
        return Response(SurveyOutputSerializer(survey).data)
