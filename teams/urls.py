from django.urls import path

from . import apis

urlpatterns = [
    path("", apis.ApiTokenApi.as_view(), name="api-token"),
]
