from django.urls import path

from . import apis

urlpatterns = [path("surveys/<slug:slug>/alignment", apis.AlignmentReportApi.as_view(), name="alignment-report")]
