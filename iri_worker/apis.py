"""Researcher endpoints for photos, checkpoints and IRI jobs: team members only, scoped by teams.selectors."""
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.apis import TeamScopedApi
from teams.fields import TeamScopedPrimaryKeyField
from teams.models import Role

from .models import Checkpoint, IriJob, TargetPhoto
from .selectors import (
    iri_chunk_list,
    iri_image_list,
    iri_job_proxy_summary,
    iri_job_record,
    iri_job_validity_summary,
)
from .services import (
    checkpoint_upload,
    iri_job_cancel,
    iri_job_create,
    iri_job_retry,
    iri_sweep_create,
    target_photo_create,
)

UNKNOWN_ID = "Unknown {what} id: {{pk_value}}."


TEAM_FIELD_HELP = "The team that owns it (its id); needed only when you may create in several teams."


class TargetPhotoCreateApi(TeamScopedApi):
    roles = {"POST": Role.RESEARCHER}
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        team = serializers.IntegerField(required=False, allow_null=True, default=None, help_text=TEAM_FIELD_HELP)
        file = serializers.FileField()
        name = serializers.CharField(max_length=200, required=False, default="")
        label = serializers.CharField(max_length=100, required=False, allow_blank=True, allow_null=True, default=None)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        team = serializers.IntegerField(source="team_id")
        name = serializers.CharField()
        label = serializers.CharField(allow_null=True)
        url = serializers.CharField(source="image.file.url")

    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = self.get_team(team_id=data.validated_data["team"])
        upload = data.validated_data["file"]
        photo = target_photo_create(team=team, name=data.validated_data["name"] or upload.name, data=upload.read(),
                                    label=data.validated_data["label"], actor=Actor.of_request(request))
        return Response(self.OutputSerializer(photo).data, status=status.HTTP_201_CREATED)


class CheckpointOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.IntegerField(source="team_id")
    name = serializers.CharField()
    backbone = serializers.CharField()
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    status = serializers.CharField(help_text="CHECKING (a worker loads the weights), READY (jobs may use them) or "
                                             "REFUSED (see error).")
    error = serializers.CharField(help_text="Why the check refused the weights.")


class CheckpointCreateApi(TeamScopedApi):
    roles = {"POST": Role.RESEARCHER}
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        team = serializers.IntegerField(required=False, allow_null=True, default=None, help_text=TEAM_FIELD_HELP)
        file = serializers.FileField()
        backbone = serializers.CharField(max_length=100)
        name = serializers.CharField(max_length=200, required=False, default="")

    def post(self, request):
        """Stores the weights (201, status CHECKING) and starts a worker's check of them: they load into the
        architecture with weights_only=True (READY, usable by jobs) or are refused (REFUSED, with the reason in
        `error`); GET /api/iri/checkpoints/<id> tells which."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = self.get_team(team_id=data.validated_data["team"])
        upload = data.validated_data["file"]
        checkpoint = checkpoint_upload(
            team=team, name=data.validated_data["name"] or upload.name, backbone=data.validated_data["backbone"],
            data=upload.read(), actor=Actor.of_request(request),
        )
        return Response(CheckpointOutputSerializer(checkpoint).data, status=status.HTTP_201_CREATED)


class CheckpointDetailApi(TeamScopedApi):
    """One checkpoint: its status (CHECKING while a worker loads the weights, then READY or REFUSED with `error`)."""

    roles = {"GET": Role.VIEWER}
    queryset = Checkpoint.objects.all()
    lookup_url_kwarg = "checkpoint_id"

    def get(self, request, checkpoint_id: int):
        return Response(CheckpointOutputSerializer(self.get_object()).data)


class IriJobOutputSerializer(serializers.ModelSerializer):
    class ImageSerializer(serializers.Serializer):
        target = serializers.IntegerField(source="target_id")
        iri_url = serializers.CharField(source="image.file.url")
        seed_url = serializers.CharField(source="seed.file.url")
        target_url = serializers.CharField(source="target_image.file.url")
        initial_loss = serializers.FloatField()
        final_loss = serializers.FloatField()
        best_step = serializers.IntegerField()
        proxy = serializers.JSONField()
        # percentile in the null distribution, label check, loss curve (see IriImage.validity)
        validity = serializers.JSONField()
        # the layer the IRI matches its target at (its job's spec.layer; a sweep has one job per layer)
        layer = serializers.SerializerMethodField()

        def get_layer(self, image):
            return self.context["layer"]

    class ChunkSerializer(serializers.Serializer):
        index = serializers.IntegerField()
        targets = serializers.ListField(source="target_ids", child=serializers.IntegerField())
        status = serializers.CharField()
        progress = serializers.FloatField()
        attempts = serializers.IntegerField()
        worker = serializers.CharField()
        error = serializers.CharField()

    images = serializers.SerializerMethodField()
    chunks = serializers.SerializerMethodField()
    proxy = serializers.SerializerMethodField()
    validity = serializers.SerializerMethodField()
    record = serializers.SerializerMethodField()
    layer = serializers.CharField(read_only=True, help_text="spec.layer: the layer every image of the job matches.")

    class Meta:
        model = IriJob
        fields = ["id", "team", "name", "status", "progress", "error", "spec", "layer", "sweep", "versions",
                  "checkpoint", "seed_photo", "chunk_size", "created_at", "started_at", "finished_at",
                  "chunks", "proxy", "validity", "record", "images"]

    def get_images(self, job):
        return self.ImageSerializer(iri_image_list(job=job), many=True, context={"layer": job.layer}).data

    def get_chunks(self, job):
        return self.ChunkSerializer(iri_chunk_list(job=job), many=True).data

    def get_proxy(self, job):
        return iri_job_proxy_summary(job=job)

    def get_validity(self, job):
        return iri_job_validity_summary(job=job)

    def get_record(self, job):
        return iri_job_record(job=job)


class IriJobCreateApi(TeamScopedApi):
    roles = {"POST": Role.RESEARCHER}

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False, default="")
        targets = TeamScopedPrimaryKeyField(
            many=True, allow_empty=False, queryset=TargetPhoto.objects.select_related("image"),
            error_messages={"does_not_exist": UNKNOWN_ID.format(what="target photo")},
        )
        spec = serializers.DictField(
            required=False, default=dict,
            help_text='The inversion spec (docs/engine.md; missing keys take defaults). Among its keys: precision, '
                      '"fp32" (default), "bf16" (bf16 autocast) or "auto" (bf16 where the worker measures it faster '
                      'on its host and the loss after the same steps within 1 % of fp32\'s; each chunk records the '
                      'choice as precision_calibration); channels_last, true, false or null (null: the worker times '
                      'both layouts). One the backbone or this host cannot run is a 400 naming the field.',
        )
        checkpoint = TeamScopedPrimaryKeyField(
            queryset=Checkpoint.objects, required=False, allow_null=True, default=None,
            error_messages={"does_not_exist": UNKNOWN_ID.format(what="checkpoint")},
        )
        seed_photo = TeamScopedPrimaryKeyField(
            queryset=TargetPhoto.objects, required=False, allow_null=True, default=None,
            error_messages={"does_not_exist": UNKNOWN_ID.format(what="seed photo")},
        )
        chunk_size = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        layers = serializers.ListField(
            child=serializers.CharField(max_length=200), required=False, allow_empty=False, allow_null=True,
            default=None,
            help_text="A layer sweep: one job per layer (GET /api/iri/backbones/<name>/layers lists them, "
                      "with the backbone's stages); the answer is then the sweep: {sweep, layers, jobs}.",
        )

    def post(self, request):
        """One job (201: the job), or with ``layers`` a layer sweep (201: {"sweep": id, "layers": [...],
        "jobs": [job, ...]}, one job per layer, in order); nothing is created when any layer is not the backbone's."""
        data = self.InputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        targets = list(dict.fromkeys(values.pop("targets")))  # an id given twice is one target
        self.get_team(team_id=targets[0].team_id)  # a job belongs to its photos' team
        layers = values.pop("layers")
        if layers is not None:
            jobs = iri_sweep_create(targets=targets, layers=layers, **values, actor=Actor.of_request(request))
            body = {"sweep": str(jobs[0].sweep), "layers": [job.layer for job in jobs],
                    "jobs": IriJobOutputSerializer(jobs, many=True).data}
            return Response(body, status=status.HTTP_201_CREATED)
        job = iri_job_create(targets=targets, **values, actor=Actor.of_request(request))
        return Response(IriJobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class IriJobScopedApi(TeamScopedApi):
    """An endpoint about one IRI job, named by its id in the URL."""

    queryset = IriJob.objects
    lookup_url_kwarg = "job_id"


class IriJobDetailApi(IriJobScopedApi):
    roles = {"GET": Role.VIEWER}

    def get(self, request, job_id: int):
        return Response(IriJobOutputSerializer(self.get_object()).data)


class IriJobCancelApi(IriJobScopedApi):
    roles = {"POST": Role.RESEARCHER}

    def post(self, request, job_id: int):
        job = iri_job_cancel(job=self.get_object(), actor=Actor.of_request(request))
        return Response(IriJobOutputSerializer(job).data)


class IriJobRetryApi(IriJobScopedApi):
    roles = {"POST": Role.RESEARCHER}

    def post(self, request, job_id: int):
        job = iri_job_retry(job=self.get_object(), actor=Actor.of_request(request))
        return Response(IriJobOutputSerializer(job).data)


class BackboneLayersApi(APIView):  # reference data, no team's: not a TeamScopedApi, any member reads it
    """The layer names a job may use for one backbone (engine.layer_names), its default layer and its stages (the
    short list a layer sweep usually takes, shallow to deep): the registry's static data, nothing is built."""

    def get(self, request, name: str):
        from iri_worker.engine import describe_backbone

        try:
            backbone = describe_backbone(name)
        except ValueError as exc:
            raise ApplicationError(str(exc)) from exc
        return Response({"backbone": name, "default_layer": backbone.default_layer,
                         "stages": backbone.stage_names(), "layers": backbone.layer_names()})
