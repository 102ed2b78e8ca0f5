"""Researcher endpoints for photos and IRI jobs (login or token required)."""
from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.exceptions import ApplicationError

from .models import IriJob
from .selectors import iri_image_list, target_photo_list
from .services import iri_job_create, target_photo_create

UNKNOWN_TARGETS = "Unknown target photo ids: {ids}."


class TargetPhotoCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()
        name = serializers.CharField(max_length=200, required=False, default="")

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        url = serializers.CharField(source="image.file.url")

    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        photo = target_photo_create(name=data.validated_data["name"] or upload.name, data=upload.read())
        return Response(self.OutputSerializer(photo).data, status=status.HTTP_201_CREATED)


class IriJobOutputSerializer(serializers.ModelSerializer):
    class ImageSerializer(serializers.Serializer):
        target = serializers.IntegerField(source="target_id")
        iri_url = serializers.CharField(source="image.file.url")
        seed_url = serializers.CharField(source="seed.file.url")
        target_url = serializers.CharField(source="target_image.file.url")
        initial_loss = serializers.FloatField()
        final_loss = serializers.FloatField()

    images = serializers.SerializerMethodField()

    class Meta:
        model = IriJob
        fields = ["id", "name", "status", "progress", "error", "spec", "versions", "created_at", "started_at", "finished_at", "images"]

    def get_images(self, job):
        return self.ImageSerializer(iri_image_list(job=job), many=True).data


class IriJobCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False, default="")
        targets = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)
        spec = serializers.DictField(required=False, default=dict)

    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data["targets"]
        targets = list(target_photo_list(ids=ids))
        missing = sorted(set(ids) - {t.pk for t in targets})
        if missing:
            raise ApplicationError(UNKNOWN_TARGETS.format(ids=missing))
        job = iri_job_create(targets=targets, spec=data.validated_data["spec"], name=data.validated_data["name"])
        return Response(IriJobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class IriJobDetailApi(APIView):
    def get(self, request, job_id: int):
        return Response(IriJobOutputSerializer(get_object_or_404(IriJob, pk=job_id)).data)
