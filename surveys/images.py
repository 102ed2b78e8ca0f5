"""Participant-facing image URLs and bytes: opaque, one per (session, trial, position), dead when the session ends.

A URL carries an AES-SIV ciphertext of (session id, image id, a hash of the trial and position); decoded it is
random bytes of one fixed length. The server decrypts it, checks that the session is still active and serves
the image re-encoded as an uncompressed PNG, whose length depends only on its pixel size: two options of one
screen cannot be told apart by their file length.
"""
import functools
import hashlib
import io
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from django.conf import settings
from django.urls import reverse
from PIL import Image

from iri_worker.models import StoredImage

_CONTEXT = b"surveys.image-url.v2"
_PLAIN = struct.Struct(">QQ8s")  # session id, image id, 8 bytes of sha256(trial / screen + position)


@functools.lru_cache(maxsize=4)
def _cipher(secret_key: str) -> AESSIV:
    return AESSIV(hashlib.sha512(_CONTEXT + secret_key.encode()).digest())  # AES-256-SIV: 64-byte key


def image_url(*, participant_id: int, image_id: int, place: str) -> str:
    """The URL of one image at one place (`place` names the trial or screen and the position on it).

    AES-SIV is deterministic, so a reload gets the same URLs (the browser's cache still works), while the same
    image at two places, or for two sessions, gets unrelated URLs."""
    where = hashlib.sha256(place.encode()).digest()[:8]
    token = _cipher(settings.SECRET_KEY).encrypt(_PLAIN.pack(participant_id, image_id, where), None)
    # Hex, not base64: an alphabet of 0-9a-f spells no word ("seed", "target", …) by chance.
    return reverse("participant-image", kwargs={"token": token.hex()})


def image_ids_from_token(token: str) -> tuple[int, int] | None:
    """(session id, image id) of a URL token, or None for anything this server did not make."""
    try:
        raw = bytes.fromhex(token)
        participant_id, image_id, _ = _PLAIN.unpack(_cipher(settings.SECRET_KEY).decrypt(raw, None))
    except (InvalidTag, ValueError, struct.error):
        return None
    return participant_id, image_id


@functools.lru_cache(maxsize=256)  # stored images never change (named by their hash)
def image_bytes_for_participant(image: StoredImage) -> bytes:
    with image.file.open("rb") as fh:
        picture = Image.open(io.BytesIO(fh.read())).convert("RGB")
    out = io.BytesIO()
    picture.save(out, format="PNG", compress_level=0)  # stored zlib blocks: length = f(width, height) only
    return out.getvalue()
