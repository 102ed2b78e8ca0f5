"""An IRI proves it is one: its distance to its target sits low in a null distribution of unrelated pairs."""

import dataclasses
import math

import pytest
import torch

from iri_worker.engine import InversionSpec, invert, measure_adaptive_c, with_adversarial_c
from iri_worker.engine import validity as v


def test_the_percentile_is_the_share_of_null_distances_at_or_below_the_iris_distance():
    # By hand: null {0.5, 0.7, 0.9, 1.1}; 0.1 is below all (0 %), 0.7 ties the second (2 of 4 are <= it:
    # 50 %, ties count against the IRI), 0.95 is above three (75 %), 2.0 above all (100 %).
    null = torch.tensor([0.9, 0.5, 1.1, 0.7])  # any order

    percentiles = v.null_percentiles(torch.tensor([0.1, 0.7, 0.95, 2.0, math.nan]), null)

    assert percentiles[:4].tolist() == [0.0, 50.0, 75.0, 100.0]
    assert math.isnan(percentiles[4])


def test_without_a_null_distribution_there_is_no_percentile():
    assert math.isnan(v.null_percentiles(torch.tensor([0.3]), torch.zeros(0))[0])


def test_null_distances_are_the_losss_representation_term_between_the_pairs():
    reps = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    pairs = torch.tensor([[0, 1], [2, 0], [0, 2]])

    # ||a - b|| / ||b||: (1,-1)/1 = sqrt 2; (1,0)/1 = 1; (-1,0)/2 = 0.5, sorted
    assert v.null_distances(reps, pairs).tolist() == pytest.approx([0.5, 1.0, math.sqrt(2)])


def test_a_small_pool_gives_every_ordered_pair_and_a_large_one_a_fixed_sample():
    assert v.null_pairs(3).tolist() == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    assert v.null_pairs(1).shape == (0, 2)

    sample = v.null_pairs(100, max_pairs=1000, seed=0)

    assert sample.shape == (1000, 2) and bool((sample[:, 0] != sample[:, 1]).all())
    assert len({tuple(p) for p in sample.tolist()}) == 1000  # distinct pairs
    assert torch.equal(sample, v.null_pairs(100, max_pairs=1000, seed=0))  # the same on every worker
    assert not torch.equal(sample, v.null_pairs(100, max_pairs=1000, seed=1))


def test_an_iri_made_by_the_engine_is_closer_to_its_target_than_unrelated_images(tiny, random_images):
    targets = random_images(4, seed=3)
    spec = InversionSpec.from_dict({"backbone": "tiny_cnn", "steps": 60, "image_size": 32})
    iris = invert(spec, targets, backbone=tiny).images

    null = v.null_distances(v.representations(tiny, targets), v.null_pairs(4))
    reps = v.representations(tiny, torch.cat([iris, targets]), batch_size=3)  # batches of any size agree
    distances = v.relative_distances(reps[:4], reps[4:])

    assert distances.max() < null.min()
    assert v.null_percentiles(distances, null).tolist() == [0.0] * 4


def test_the_label_check_uses_the_backbones_own_classifier_and_is_none_without_one(tiny, random_images):
    images = random_images(3)

    labels = v.top1_labels(tiny, images, batch_size=2)

    assert labels.tolist() == tiny.classify(images).argmax(1).tolist()
    assert v.top1_labels(dataclasses.replace(tiny, classifier=False), images) is None


def test_the_loss_curve_keeps_a_few_dozen_steps_from_first_to_last():
    steps = v.loss_curve_steps(1000)
    assert len(steps) == v.LOSS_CURVE_POINTS and steps[0] == 0 and steps[-1] == 999
    assert v.loss_curve_steps(5) == [0, 1, 2, 3, 4]
    assert v.loss_curve_steps(0) == []


def test_the_adaptive_c_measured_alone_is_the_one_a_run_measures_at_its_first_step(tiny, random_images):
    targets = random_images(2, seed=5)
    spec = InversionSpec.from_dict({"backbone": "tiny_cnn", "steps": 4, "image_size": 32, "recipe": "adv_ssim",
                                    "transforms": "cifar"})

    c = measure_adaptive_c(spec, targets, backbone=tiny)
    run = invert(spec, targets, backbone=tiny)
    frozen = invert(dataclasses.replace(spec, recipe_terms=with_adversarial_c(spec.recipe, c)), targets, backbone=tiny)

    assert c == run.adversarial_c  # exactly: the same evaluation, the same first transform draw
    assert torch.equal(frozen.images, run.images)  # running with the stored c is the same run
    assert measure_adaptive_c(dataclasses.replace(spec, recipe="reg_free"), targets, backbone=tiny) is None
