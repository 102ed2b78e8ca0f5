import io
import struct

import pytest
import torch
from PIL import Image

from iri_worker.engine import png_bytes_to_tensor, photo_to_tensor, tensor_to_png_bytes


def png_chunk_types(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        types.append(data[pos + 4 : pos + 8].decode("ascii"))
        pos += 12 + length  # length, type, data, crc
    return types


def test_a_png_round_trip_is_exact_to_within_one_grey_level():
    image = torch.rand(3, 17, 23, generator=torch.Generator().manual_seed(0))
    back = png_bytes_to_tensor(tensor_to_png_bytes(image))
    assert back.shape == (3, 17, 23) and back.dtype == torch.float32
    assert (back - image).abs().max() <= 0.5 / 255 + 1e-6  # rounding, not truncation


def test_already_quantised_images_survive_unchanged():
    image = torch.randint(0, 256, (3, 8, 8), generator=torch.Generator().manual_seed(0)).float() / 255
    assert torch.equal(png_bytes_to_tensor(tensor_to_png_bytes(image)), image)


def test_pngs_carry_no_metadata_chunks():
    types = png_chunk_types(tensor_to_png_bytes(torch.rand(3, 10, 10)))
    assert set(types) <= {"IHDR", "IDAT", "IEND"}
    assert types[0] == "IHDR" and types[-1] == "IEND"


def test_out_of_range_values_are_clamped_when_encoding():
    image = torch.tensor([-1.0, 0.5, 2.0]).view(3, 1, 1)
    back = png_bytes_to_tensor(tensor_to_png_bytes(image))
    assert (back.flatten() * 255).round().tolist() == [0.0, 128.0, 255.0]


def test_only_three_channel_images_are_encoded():
    with pytest.raises(ValueError):
        tensor_to_png_bytes(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("garbage", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_garbage_bytes_are_not_a_valid_image(garbage):
    with pytest.raises(ValueError, match="not a valid image"):
        png_bytes_to_tensor(garbage)


def test_a_truncated_png_is_not_a_valid_image():
    data = tensor_to_png_bytes(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="not a valid image"):
        png_bytes_to_tensor(data[: len(data) // 2])


def test_greyscale_and_rgba_files_decode_to_three_channels():
    for mode in ("L", "RGBA", "P"):
        buffer = io.BytesIO()
        Image.new(mode, (5, 4)).save(buffer, format="PNG")
        assert png_bytes_to_tensor(buffer.getvalue()).shape == (3, 4, 5)


def test_a_photo_becomes_a_centre_square_of_the_requested_size():
    # A wide photo: red | green | blue thirds. The centre crop must be all green.
    photo = Image.new("RGB", (90, 30))
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        photo.paste(colour, (30 * i, 0, 30 * (i + 1), 30))
    tensor = photo_to_tensor(photo, 16)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    assert tensor.min() >= 0 and tensor.max() <= 1
    assert torch.allclose(tensor[:, 2:-2, 2:-2].mean(dim=(1, 2)), torch.tensor([0.0, 1.0, 0.0]), atol=0.02)


def test_photos_in_other_modes_and_tall_photos_are_handled():
    assert photo_to_tensor(Image.new("L", (20, 50), 128), 32).shape == (3, 32, 32)
    assert photo_to_tensor(Image.new("RGBA", (7, 9)), 8).shape == (3, 8, 8)


def test_photos_of_any_mode_become_rgb_without_losing_the_picture():
    import numpy as np
    from PIL import Image

    from iri_worker.engine import photo_to_tensor

    deep = Image.fromarray((np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16))
    grey16 = photo_to_tensor(deep, 16)
    assert grey16.shape == (3, 16, 16) and 0.05 < grey16.mean() < 0.95  # rescaled, not clipped at 255
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    assert photo_to_tensor(clear, 8).min() == 1.0  # transparent pixels become white, not black
    for mode in ("L", "P", "LA", "CMYK", "1", "I", "F", "YCbCr"):
        tensor = photo_to_tensor(Image.new(mode, (40, 30)), 12)
        assert tensor.shape == (3, 12, 12) and 0 <= tensor.min() and tensor.max() <= 1
