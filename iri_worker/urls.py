from django.urls import path

from . import apis

urlpatterns = [
    path("photos", apis.TargetPhotoCreateApi.as_view(), name="photo-create"),
    path("jobs", apis.IriJobCreateApi.as_view(), name="iri-job-create"),
    path("jobs/<int:job_id>", apis.IriJobDetailApi.as_view(), name="iri-job-detail"),
]
