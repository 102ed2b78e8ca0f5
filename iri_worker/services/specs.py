"""Job specs: checked against the engine's registry (imported lazily, so the web process needs torch only to
validate; the backbone's static description is read, no model is built), and the default chunk size for an image
size."""
from backend.exceptions import ApplicationError


def iri_spec_validate(spec: dict) -> dict:
    """Check a job spec against the engine and return it with every default filled in (a registry lookup: the
    backbone's layers, sizes and stages are static data, so nothing is built)."""
    from iri_worker.engine import InversionSpec

    if not isinstance(spec, dict):
        raise ApplicationError("The spec must be a JSON object.")
    try:
        return InversionSpec.from_dict(spec).to_dict()
    except ValueError as exc:
        raise ApplicationError(str(exc)) from exc


def iri_spec_default_chunk_size(*, image_size: int) -> int:
    """Targets per task: 8 at 224 px, more for smaller images (same pixels per batch), at most 64."""
    return max(1, min(64, int(8 * (224 / max(image_size, 1)) ** 2)))
