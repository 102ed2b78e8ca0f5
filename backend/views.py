from django.contrib.admin.views.decorators import staff_member_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404


@staff_member_required
def media_serve(request, path: str):
    """Stored images for researchers (admin previews); works with any Django storage."""
    if ".." in path or not default_storage.exists(path):
        raise Http404("No such file.")
    return FileResponse(default_storage.open(path, "rb"), content_type="image/png")
