"""Record the layer names of every registered backbone in iri_worker/engine/layer_names.json (run after an
architecture changes; tests/iri_worker/engine/test_catalog.py fails until then). Builds each backbone on the CPU
and probes it once: `.venv/bin/python scripts/record_layer_names.py`."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iri_worker.engine import list_backbones, load_backbone  # noqa: E402
from iri_worker.engine.catalog import LAYER_NAMES_FILE  # noqa: E402

if __name__ == "__main__":
    names = {name: load_backbone(name).layer_names() for name in list_backbones()}
    LAYER_NAMES_FILE.write_text(json.dumps(names, indent=1) + "\n", encoding="utf-8")
    print(f"{LAYER_NAMES_FILE}: {sum(map(len, names.values()))} layers of {len(names)} backbones")
