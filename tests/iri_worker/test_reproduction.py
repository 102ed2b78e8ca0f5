"""The paper's central result, small enough for every test run: on Fashion-MNIST, the IRIs of an adversarially
trained network look like their targets and those of a standard network do not; the adversarial regularizer
makes both look unaligned (Nanda et al., AAAI 2023). Everything runs through iri_worker.reproduction, the code
behind `manage.py reproduce`, on a slice of the data: 4,000 training images at 16 px, a width-8 ResNet, 3 epochs,
2-step L2 PGD, 10 targets (one per class), 300 IRI steps.

The measure is not the network's own: d = 1 - SSIM between an IRI and its target, on 8-bit images, averaged
over the 10 IRIs (`<metric>_to_target` in the report), and the proxy alignment (share of IRIs nearer their
target than their seed, a photo of another class).

Observed gap d(standard) - d(robust) under reg_free with this config, rng_seed 0 to 11 (each seed draws another
training subset, initialisation, augmentation and attack start):

    0.2005  0.2658  0.2551  0.1552  0.1613  0.2553  0.1708  0.2176  0.1581  0.1490  0.2592  0.2405

(smallest 0.149). Proxy alignment of the robust model 0.2 to 0.7, of the standard model 0.0 (0.1 once); under
the adversarial loss 0.0 for both models in all 12 runs.

Why it cannot flake: the seed is fixed (rng_seed 0: gap 0.2005) and every random draw in training and in the
engine comes from generators seeded by it; torch runs on the CPU with one thread and deterministic algorithms,
so a run repeats bit for bit on one machine. Another CPU may round differently, which can only nudge this one
run; a whole new training run (another seed) kept the gap between 0.149 and 0.266, and the margin, 0.05, is a
third of the smallest of those. The other bounds leave room as well: robust minus standard share >= 0.1 (0.2 at
least observed), robust accuracy under attack above the standard model's by 0.1 (0.245 at least), adversarial
shares <= 0.1 (0.0 observed).
"""
import dataclasses
from pathlib import Path

import pytest
import torch

from iri_worker.reproduction import FASHION_MNIST_DIR, QUICK, run_experiment

SMALL = dataclasses.replace(
    QUICK, train_images=4000, epochs=3, lr=5e-3, width=8, image_size=16, attack_steps=2, attack_step_size=2.0,
    targets=10, iri_steps=300, eval_images=200, eval_attack_steps=5, rng_seed=0,
)
MARGIN = 0.05

pytestmark = pytest.mark.skipif(
    not Path(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").exists(),
    reason=f"needs Fashion-MNIST in {FASHION_MNIST_DIR}: Debian's dataset-fashion-mnist (scripts/services.sh installs it)",
)


@pytest.fixture
def one_deterministic_cpu_thread():
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.mark.slow
def test_a_robust_networks_iris_look_like_their_targets_and_a_standard_networks_do_not(one_deterministic_cpu_thread):
    report = run_experiment(SMALL, cache_dir=None, metrics=("ssim",), adversarial_recipe="adv_ssim").report

    models, cells = report["models"], report["alignment"]
    assert models["robust"]["robust_accuracy"] > models["standard"]["robust_accuracy"] + 0.1  # the training worked
    standard, robust = cells["standard/reg_free"], cells["robust/reg_free"]
    assert standard["ssim_to_target"] - robust["ssim_to_target"] >= MARGIN
    assert robust["ssim"] >= standard["ssim"] + 0.1
    # The adversarial regularizer: both networks' IRIs nearer their seed than their target.
    assert cells["standard/adversarial"]["ssim"] <= 0.1 and cells["robust/adversarial"]["ssim"] <= 0.1
