"""Source maps of the participant app are for developers: served only when DJANGO_DEBUG is on."""
from django.conf import settings
from django.http import HttpResponseNotFound


def source_maps_only_in_debug(get_response):
    def middleware(request):
        if not settings.DEBUG and request.path_info.endswith(".map") and request.path_info.startswith(settings.STATIC_URL):
            return HttpResponseNotFound()
        return get_response(request)

    return middleware
