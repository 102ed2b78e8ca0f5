"""Photos that ship inside installed packages, so the demo and tests need no network."""
import functools
import io

from PIL import Image


def demo_job_spec(*, steps: int, image_size: int) -> dict:
    """The spec of the demo's IRI job on these photos (`manage.py demo`; bench/engine_demo.py times the same job)."""
    return {"backbone": "efficientnet_lite0", "recipe": "reg_free", "seed_kind": "super-noise", "steps": steps,
            "step_size": 1.0, "image_size": image_size, "rng_seed": 0}


def bundled_photos() -> dict[str, bytes]:
    """Name -> PNG bytes of the colour photos bundled with scikit-image (CC0 / public domain)."""
    return dict(_bundled_photos())


def attention_photos() -> dict[str, bytes]:
    """The bundled photos plus more offline ones (never demo targets): the pool of catch and practice images."""
    return dict(_attention_photos())


@functools.cache  # encoding them takes half a second; every survey build with catch trials reads them
def _bundled_photos() -> dict[str, bytes]:
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


@functools.cache
def _attention_photos() -> dict[str, bytes]:
    import matplotlib.cbook as cbook
    import skimage.data as data

    photos = dict(bundled_photos())
    for name in ("astronaut", "hubble_deep_field", "immunohistochemistry"):
        out = io.BytesIO()
        Image.fromarray(getattr(data, name)()).save(out, format="PNG")
        photos[name.replace("_", " ")] = out.getvalue()
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        photos["grace hopper"] = fh.read()
    return photos
