from django.urls import path

from . import answer_api, apis

urlpatterns = [
    path("api/p/surveys/<slug:slug>/enroll", apis.EnrollApi.as_view(), name="participant-enroll"),
    path("api/p/sessions/", apis.ParticipantApi.as_view(), name="participant-session-base"),
    path("api/p/sessions/<str:token>/consent", apis.ConsentApi.as_view(), name="participant-consent"),
    path("api/p/sessions/<str:token>/trials", apis.TrialListApi.as_view(), name="participant-trials"),
    path("api/p/sessions/<str:token>/next", apis.TrialNextApi.as_view(), name="participant-next"),
    path("api/p/sessions/<str:token>/responses", answer_api.response_create, name="participant-responses"),
    path("api/p/sessions/<str:token>/events", apis.EventsApi.as_view(), name="participant-events"),
    path("api/p/sessions/<str:token>/heartbeat", apis.HeartbeatApi.as_view(), name="participant-heartbeat"),
    path("api/p/sessions/<str:token>/return", apis.ReturnApi.as_view(), name="participant-return"),
    path("api/p/sessions/<str:token>/abort", apis.AbortApi.as_view(), name="participant-abort"),
    path("api/p/sessions/<str:token>/complete", apis.CompleteApi.as_view(), name="participant-complete"),
    path("s/<slug:slug>/", apis.survey_page, name="survey-page"),
    path("i/<str:token>", apis.participant_image, name="participant-image"),
]
