"""Photos that ship inside installed packages, so the demo and tests need no network."""
import io

from PIL import Image


def bundled_photos() -> dict[str, bytes]:
    """Name -> PNG bytes of the colour photos bundled with scikit-image (CC0 / public domain)."""
    import skimage.data as data

    arrays = {
        "chelsea the cat": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "motorcycle": data.stereo_motorcycle()[0],
    }
    photos = {}
    for name, array in arrays.items():
        out = io.BytesIO()
        Image.fromarray(array).save(out, format="PNG")
        photos[name] = out.getvalue()
    return photos
