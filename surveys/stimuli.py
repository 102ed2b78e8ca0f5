"""Images a survey makes for itself: options resized to their query's size, and the catch and practice images.

Fitting is the engine's own target preprocessing (shorter side to size, bicubic, centre crop), done with PIL
so the web process need not import torch; a photo fitted to a job's size gives the very bytes of that job's
target image.
"""
import functools
import io
import random

from PIL import Image, ImageOps

from iri_worker.demo_photos import attention_photos
from iri_worker.models import StoredImage, TargetPhoto
from iri_worker.services import stored_image_save

Size = tuple[int, int]


def png_fitted(data: bytes, size: Size) -> bytes:
    width, height = size
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    scale = max(width / image.width, height / image.height)
    new_w, new_h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    out = io.BytesIO()
    image.crop((left, top, left + width, top + height)).save(out, format="PNG")
    return out.getvalue()


def image_size(image: StoredImage) -> Size:
    return image.width, image.height


@functools.lru_cache(maxsize=1)
def _attention_photos() -> tuple[tuple[str, bytes], ...]:
    return tuple(sorted(attention_photos().items()))


class PhotoPool:
    """Natural photos to fit at any size: the survey's own target photos, then the bundled ones, in an order
    shuffled by the survey's seed. Fitted images are stored once per (photo, size)."""

    def __init__(self, *, targets: list[TargetPhoto], rng: random.Random):
        own = [(f"target {t.pk}", t.image) for t in targets]
        bundled = [(f"bundled {name}", data) for name, data in _attention_photos()]
        rng.shuffle(own)
        rng.shuffle(bundled)
        self.sources = own + bundled
        self._fitted: dict[tuple[str, Size], StoredImage] = {}

    def fitted(self, key: str, source, size: Size) -> StoredImage:
        if (key, size) not in self._fitted:
            data = source if isinstance(source, bytes) else stored_image_bytes(source)
            self._fitted[key, size] = stored_image_fitted(data=data, size=size)
        return self._fitted[key, size]

    def pick(self, *, size: Size, n: int, avoid: set[int]) -> list[StoredImage]:
        """Up to n different photos at `size` whose images are not in `avoid` (image ids)."""
        picked: list[StoredImage] = []
        for key, source in self.sources:
            image = self.fitted(key, source, size)
            if image.pk not in avoid and all(image.pk != p.pk for p in picked):
                picked.append(image)
                if len(picked) == n:
                    break
        return picked


def stored_image_fitted(*, data: bytes, size: Size) -> StoredImage:
    png = png_fitted(data, size)
    return stored_image_save(png_bytes=png, width=size[0], height=size[1])


def stored_image_resized(*, image: StoredImage, size: Size) -> StoredImage:
    return stored_image_fitted(data=stored_image_bytes(image), size=size)


def stored_image_bytes(image: StoredImage) -> bytes:
    with image.file.open("rb") as fh:
        return fh.read()
