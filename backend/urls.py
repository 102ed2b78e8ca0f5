from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from teams.permissions import TeamMember

from .views import healthz, media_serve, readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("api/iri/", include("iri_worker.urls")),
    path("api/surveys/", include("surveys.researcher_urls")),
    path("api/results/", include("results.urls")),
    path("api/tokens", include("teams.urls")),
    # The schema names server-only fields (a trial's target_option): team members only.
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[TeamMember]), name="schema"),
    path("", include("surveys.urls")),
    # Stored images by hash, for researchers only; participants get signed per-trial URLs (/i/...).
    re_path(r"^media/(?P<path>img/[0-9a-f]{2}/[0-9a-f]{64}\.png)$", media_serve, name="media"),
]
