"""Participant-facing image URLs: signed, different for every trial, and silent about what the image is."""
from django.core import signing
from django.urls import reverse

from iri_worker.models import StoredImage

_SALT = "surveys.image"


def image_url(*, image: StoredImage, nonce: str) -> str:
    token = signing.dumps({"h": image.sha256, "n": nonce}, salt=_SALT, compress=False)
    return reverse("participant-image", kwargs={"token": token})


def image_from_token(token: str) -> StoredImage | None:
    try:
        sha256 = signing.loads(token, salt=_SALT)["h"]
    except (signing.BadSignature, KeyError, TypeError):
        return None
    return StoredImage.objects.filter(sha256=sha256).first()
