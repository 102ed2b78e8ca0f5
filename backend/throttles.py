"""Rate limits for the open participant endpoints: enrollment per client IP, everything else per session.

Counters live in Django's cache (Redis when CACHE_URL points at it, so all web processes share them).
When the cache is unreachable the limits step aside: a broken cache must never stop a participant.
"""
import hashlib
import logging

from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class _FailOpenThrottle(SimpleRateThrottle):
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:  # the cache is down: let the request through, say so in the log
            logger.warning("rate-limit cache unavailable; request allowed", exc_info=True)
            return True


class EnrollRateThrottle(_FailOpenThrottle):
    """New sessions per client IP (many people may share one IP, so the default is generous)."""

    scope = "participant_enroll"

    def get_cache_key(self, request, view):
        if request.resolver_match is None or request.resolver_match.url_name != "participant-enroll":
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ParticipantRateThrottle(_FailOpenThrottle):
    """Requests per participant session (answers, events, heartbeats, trial lists)."""

    scope = "participant_session"

    def get_cache_key(self, request, view):
        token = getattr(view, "kwargs", {}).get("token")
        if not token or not request.path.startswith("/api/p/sessions/"):
            return None
        # The token comes from the URL as typed: hashed, any text makes a short key that every cache backend accepts.
        return self.cache_format % {"scope": self.scope, "ident": hashlib.sha256(token.encode()).hexdigest()}
