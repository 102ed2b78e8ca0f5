from django.shortcuts import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from surveys.models import Survey

from .services import alignment_report


class AlignmentReportApi(APIView):
    def get(self, request, slug: str):
        return Response(alignment_report(survey=get_object_or_404(Survey, slug=slug)))
