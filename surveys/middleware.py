"""Participant API requests skip the middleware they never use.

Participants have no login, no cookies and no CSRF token (surveys/API.md): sessions, authentication, messages,
CSRF and the rest only cost time on the survey's busiest endpoints. Placed right after SecurityMiddleware and
WhiteNoise, this middleware resolves `/api/p/…` paths against surveys/urls.py (still the one place that names
the routes) and calls the view directly; every other path goes down the full stack.
"""
from django.urls import Resolver404, get_resolver

PREFIX = "/api/p/"


def participant_api_fast_path(get_response):
    resolver = get_resolver("surveys.urls")

    def middleware(request):
        if not request.path_info.startswith(PREFIX):
            return get_response(request)
        try:
            match = resolver.resolve(request.path_info)
        except Resolver404:
            return get_response(request)
        request.resolver_match = match  # the rate limits read it
        response = match.func(request, *match.args, **match.kwargs)
        render = getattr(response, "render", None)
        return render() if callable(render) else response  # DRF responses render late, as in Django's handler

    return middleware
