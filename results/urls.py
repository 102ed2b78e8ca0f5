from django.urls import path

from . import apis

urlpatterns = [
    path("surveys/<slug:slug>/alignment", apis.AlignmentReportApi.as_view(), name="alignment-report"),
    path("surveys/<slug:slug>/answers", apis.AnswerListApi.as_view(), name="results-answers"),
    path("surveys/<slug:slug>/export/<str:name>", apis.AnswerExportApi.as_view(), name="results-export"),
    path("surveys/<slug:slug>/analysis-plan", apis.SurveyAnalysisPlanApi.as_view(), name="results-analysis-plan"),
]
