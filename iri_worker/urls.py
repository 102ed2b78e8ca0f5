from django.urls import path

from . import apis

urlpatterns = [
    path("photos", apis.TargetPhotoCreateApi.as_view(), name="photo-create"),
    path("backbones/<str:name>/layers", apis.BackboneLayersApi.as_view(), name="backbone-layers"),
    path("checkpoints", apis.CheckpointCreateApi.as_view(), name="checkpoint-create"),
    path("checkpoints/<int:checkpoint_id>", apis.CheckpointDetailApi.as_view(), name="checkpoint-detail"),
    path("jobs", apis.IriJobCreateApi.as_view(), name="iri-job-create"),
    path("jobs/<int:job_id>", apis.IriJobDetailApi.as_view(), name="iri-job-detail"),
    path("jobs/<int:job_id>/cancel", apis.IriJobCancelApi.as_view(), name="iri-job-cancel"),
    path("jobs/<int:job_id>/retry", apis.IriJobRetryApi.as_view(), name="iri-job-retry"),
]
