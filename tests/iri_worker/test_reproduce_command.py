"""`manage.py reproduce` trains both models on Fashion-MNIST, makes IRIs and prints one JSON line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from iri_worker.reproduction import FASHION_MNIST_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).exists(), reason="needs Debian's dataset-fashion-mnist (scripts/services.sh installs it)")
def test_reproduce_prints_the_alignment_of_each_model_and_loss_as_one_json_line(tmp_path):
    tiny = ["--train-images", "256", "--epochs", "1", "--attack-steps", "1", "--targets", "4", "--iri-steps", "5",
            "--eval-images", "40"]
    run = subprocess.run([sys.executable, "manage.py", "reproduce", "--quick", "--cache", str(tmp_path), *tiny],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = run.stdout.strip().splitlines()
    report = json.loads(line)
    assert set(report["models"]) == {"standard", "robust"}
    for model in report["models"].values():
        assert 0 <= model["robust_accuracy"] <= 1 and 0 <= model["clean_accuracy"] <= 1
    assert {"standard/reg_free", "robust/reg_free", "standard/adversarial", "robust/adversarial"} <= set(report["alignment"])
    for cell in report["alignment"].values():
        assert 0 <= cell["ssim"] <= 1 and 0 <= cell["ms_ssim"] <= 1
    assert report["attack"]["norm"] == "L2" and report["attack"]["eps"] > 0
    assert len(list(tmp_path.glob("fmnist-resnet-*.pt"))) == 2  # both models cached

    again = subprocess.run([sys.executable, "manage.py", "reproduce", "--quick", "--cache", str(tmp_path), *tiny],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert json.loads(again.stdout)["models"]["robust"]["cached"] is True


def test_reproduce_says_where_to_get_the_data_when_it_is_missing(tmp_path):
    run = subprocess.run([sys.executable, "manage.py", "reproduce", "--quick", "--data-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert run.returncode != 0
    assert "dataset-fashion-mnist" in run.stderr
