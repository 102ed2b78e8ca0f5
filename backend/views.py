from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection
from django.http import FileResponse, Http404, JsonResponse


@login_required(login_url="admin:login")
def media_serve(request, path: str):
    """Stored images for the members of a team that uses them (admin previews); works with any Django storage.
    Participants reach images only through their survey's per-trial URLs (/i/...)."""
    from surveys.selectors import stored_image_visible

    if ".." in path or not stored_image_visible(user=request.user, name=path) or not default_storage.exists(path):
        raise Http404("No such file.")
    return FileResponse(default_storage.open(path, "rb"), content_type="image/png")


def healthz(request):
    """The process is up and answering."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Ready to serve: the database answers and the broker accepts a connection."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except DatabaseError as exc:
        return f"error: {exc.__class__.__name__}"


def _check_broker() -> str:
    from backend.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # any transport error means "not ready"
        return f"error: {exc.__class__.__name__}"
