from django.urls import path

from . import research_apis as apis

urlpatterns = [
    path("", apis.SurveyCreateApi.as_view(), name="survey-create"),
    path("<slug:slug>", apis.SurveyDetailApi.as_view(), name="survey-detail"),
    path("<slug:slug>/monitor", apis.SurveyMonitorApi.as_view(), name="survey-monitor"),
    path("<slug:slug>/plan", apis.SurveyPlanApi.as_view(), name="survey-plan"),
    path("<slug:slug>/publish", apis.SurveyPublishApi.as_view(), name="survey-publish"),
]
