import json

import pytest
import torch

from iri_worker.engine import RECIPES, build_loss, losses
from iri_worker.engine.losses import TERMS, Loss, LossContext, representation_distance
from iri_worker.engine.steps import NormalizedGradientStep


@pytest.fixture
def ctx(tiny, random_images):
    targets = random_images(3, seed=1)
    with torch.no_grad():
        target_rep = tiny.features(targets)
    return LossContext(x=random_images(3, seed=2), backbone=tiny, layer="pool", target_rep=target_rep, targets=targets)


def mean_pixel() -> Loss:
    return Loss(lambda c: c.x.mean(dim=(1, 2, 3)), "mean")


def test_the_public_losses_module_exposes_the_loss_type_and_the_representation_distance():
    assert losses.Loss is Loss and losses.representation_distance is representation_distance


def test_representation_distance_is_the_relative_l2_gap_per_image(ctx):
    rep = ctx.backbone.features(ctx.x)
    expected = (rep - ctx.target_rep).norm(dim=1) / ctx.target_rep.norm(dim=1)

    value = representation_distance()(ctx)

    assert value.shape == (3,)
    assert torch.allclose(value, expected)


def test_representation_distance_is_zero_when_the_image_is_the_target(ctx):
    same = LossContext(x=ctx.targets, backbone=ctx.backbone, layer="pool", target_rep=ctx.target_rep)
    assert torch.allclose(representation_distance()(same), torch.zeros(3), atol=1e-6)


def test_weighted_sums_evaluate_term_by_term(ctx):
    a, b = representation_distance(), mean_pixel()
    assert torch.allclose((2 * a + b)(ctx), 2 * a(ctx) + b(ctx))
    assert torch.allclose((a * 3 - b / 4)(ctx), 3 * a(ctx) - b(ctx) / 4)
    assert torch.allclose((-a)(ctx), -a(ctx))
    assert torch.allclose(sum([a, b])(ctx), a(ctx) + b(ctx))


def test_a_loss_prints_as_its_recipe():
    rep = representation_distance()
    tv = Loss(lambda c: c.x.sum(dim=(1, 2, 3)), "tv")
    assert str(rep) == "rep"
    assert str(10 * rep + 0.0005 * tv) == "10*rep + 0.0005*tv"
    assert str(rep - (rep + tv)) == "rep - (rep + tv)"
    assert str(2 * (rep + tv)) == "2*(rep + tv)"
    assert str(-rep) == "-rep" and str(rep / 2) == "rep/2"


@pytest.mark.parametrize(
    "bad", [lambda a: a * a, lambda a: a * "2", lambda a: a + 1, lambda a: a / a, lambda a: a * True]
)
def test_only_scalar_weights_and_other_losses_combine(bad):
    with pytest.raises(TypeError):
        bad(representation_distance())


def test_the_reg_free_recipe_is_the_plain_representation_distance(ctx):
    loss = build_loss("reg_free")
    assert str(loss) == "reg_free"
    assert torch.allclose(loss(ctx), representation_distance()(ctx))


def test_a_recipe_can_be_given_as_a_list_of_weighted_terms(ctx):
    loss = build_loss([{"term": "representation_distance", "weight": 10}])
    assert str(loss) == "10*rep"
    assert torch.allclose(loss(ctx), 10 * representation_distance()(ctx))


def test_recipes_are_plain_json_data():
    assert json.loads(json.dumps(RECIPES)) == RECIPES
    assert "reg_free" in RECIPES


def test_an_unknown_recipe_or_term_is_refused_with_the_available_names():
    with pytest.raises(ValueError, match="Unknown recipe 'freq'.*reg_free"):
        build_loss("freq")
    with pytest.raises(ValueError, match="Unknown loss term 'tv'.*representation_distance"):
        build_loss([{"term": "tv", "weight": 1.0}])
    with pytest.raises(ValueError):
        build_loss([])


@pytest.mark.parametrize("term", sorted(TERMS))
def test_every_loss_term_goes_down_under_a_few_descent_steps(term, ctx):
    # lucent's contract test: a registered objective must be optimisable.
    loss, rule = TERMS[term](), NormalizedGradientStep(0.5)
    x = ctx.x.clone()
    start = loss(ctx).sum().item()
    for _ in range(10):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(LossContext(x, ctx.backbone, ctx.layer, ctx.target_rep)).sum(), x)
        x = rule.project(rule.step(x.detach(), grad))
    end = loss(LossContext(x, ctx.backbone, ctx.layer, ctx.target_rep)).sum().item()
    assert end < start
