"""The paper's central result on Fashion-MNIST, in pure PyTorch (no Django, no printing).

Nanda et al. (AAAI 2023) find that IRIs of a standard network look like noise to people, IRIs of an
adversarially trained network look like their targets, and that the adversarial regularizer makes
every network look unaligned. This module trains the two networks (a small ResNet, standard and
L2-PGD adversarially trained), wraps them as engine backbones and measures the perceptual proxy
(share of IRIs closer to their target than to their seed) for each (model x loss).

The steps are small functions that ``run_experiment`` puts together and that tests call with small
sizes: ``experiment_data`` (training subset, evaluation images, targets and their photo seeds),
``model_get`` (train, or load from the weights cache), ``iri_set_make`` (one IRI per target with the
engine), ``iri_set_measure`` (the report's numbers) and ``comparison_figure`` (a picture for people).
Only this package's callers (the ``reproduce`` command) touch files other than the dataset and the
weights cache given to ``run_experiment``.
"""
from iri_worker.engine.images import eight_bit  # the command writes images as people see them

from .data import CLASSES, FASHION_MNIST_DIR, FULL, QUICK, ReproductionConfig
from .experiment import Reproduction, comparison_figure, run_experiment

__all__ = ["CLASSES", "FASHION_MNIST_DIR", "FULL", "QUICK", "Reproduction", "ReproductionConfig", "comparison_figure",
           "eight_bit", "run_experiment"]
