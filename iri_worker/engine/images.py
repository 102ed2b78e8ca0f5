"""Tensor <-> PIL / PNG bytes. Pure functions: no paths, no files."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = ["photo_to_tensor", "tensor_to_png_bytes", "png_bytes_to_tensor", "eight_bit"]


def _pil_to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB, keeping the picture.

    Transparency is composited onto white (``convert("RGB")`` would show
    whatever colour hides under transparent pixels, often black); 16/32-bit
    integer and float greyscale are rescaled rather than clipped at 255
    (PIL's own conversion saturates them).
    """
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            scale = 65535.0
        elif image.mode == "F" and array.size and array.max() <= 1.0:
            scale = 1.0
        else:
            scale = 65535.0 if array.size and array.max() > 255 else 255.0
        grey = np.clip(array / scale * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def photo_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """A target photo as float (3, size, size) in [0, 1] on CPU.

    Applies the EXIF orientation, converts any mode to RGB (``to_rgb``), resizes the shorter side to
    ``size`` (bicubic; PIL widens the filter when shrinking, i.e. antialiased)
    and takes the centre square, the usual un-augmented evaluation crop.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    image = to_rgb(ImageOps.exif_transpose(image))
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return _pil_to_tensor(image.crop((left, top, left + size, top + size)))


def eight_bit(images: torch.Tensor) -> torch.Tensor:
    """Images as stored and shown: float in [0, 1], clamped and rounded to the nearest of 256 levels (what
    ``tensor_to_png_bytes`` writes), so proxies and validity judge what people see."""
    return images.float().clamp(0, 1).mul(255).round().div(255)


def tensor_to_png_bytes(image: torch.Tensor) -> bytes:
    """Encode float (3, H, W) in [0, 1] (any device) as an 8-bit RGB PNG.

    Values are clamped and rounded to the nearest of 256 levels. The file holds
    only IHDR/IDAT/IEND chunks: no text, time or other metadata.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(image.shape)}")
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    pil = Image.fromarray(array.permute(1, 2, 0).cpu().numpy())  # HxWx3 uint8 -> RGB
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")  # no pnginfo/dpi given -> no ancillary chunks
    return buffer.getvalue()


def png_bytes_to_tensor(data: bytes) -> torch.Tensor:
    """Decode image bytes (PNG, or any format PIL reads) to float (3, H, W) in [0, 1] on CPU.

    Raises ``ValueError("not a valid image")`` for anything PIL cannot decode.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return _pil_to_tensor(image)
    except (OSError, SyntaxError, ValueError, TypeError, Image.DecompressionBombError) as error:
        raise ValueError("not a valid image") from error
