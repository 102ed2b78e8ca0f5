import pytest
import torch
from torch import nn

from iri_worker.engine import InversionSpec, invert
from iri_worker.engine.fold import batchnorm_pairs

from .test_backbones import build_fresh, registry_params


def with_trained_batchnorm_statistics(backbone):
    """Random init leaves every BatchNorm an identity (mean 0, var 1, weight 1, bias 0), which would
    hide a wrong fold: give each one the kind of statistics training leaves behind."""
    generator = torch.Generator().manual_seed(1)
    for module in backbone.module.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)
    return backbone


def representation_and_input_gradient(backbone, x, layer=None):
    x = x.clone().requires_grad_(True)
    rep = backbone.features(x, layer)
    (grad,) = torch.autograd.grad(rep.square().sum(), x)
    return rep.detach(), grad


def close(a, b):
    """Equal up to float rounding. Rounding alone moves vgg16_bn's input gradient by 0.3 % (float32
    against float64), so the bound is 1 % of the whole tensor's norm; a wrong fold is off by far more."""
    return float((a - b).norm()) <= 1e-2 * float(b.norm()) + 1e-6


@pytest.mark.parametrize("name", registry_params())
def test_folding_changes_neither_the_representation_nor_its_gradient_for_any_registered_backbone(name):
    backbone = with_trained_batchnorm_statistics(build_fresh(name))
    size = backbone.input_size if backbone.fixed_size else max(backbone.min_size, 64)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))

    plain = representation_and_input_gradient(backbone, x)
    with backbone.batchnorm_folded(keep_layer=backbone.default_layer):
        folded = representation_and_input_gradient(backbone, x)

    assert close(folded[0], plain[0]) and close(folded[1], plain[1])


def test_resnet18_folds_every_convolution_and_batchnorm_pair_including_the_shortcuts():
    backbone = build_fresh("resnet18")

    pairs = batchnorm_pairs(backbone.module)

    assert len(pairs) == 20  # 17 convolutions on the main path + 3 downsampling shortcuts
    assert ("conv1", "bn1") in pairs and ("layer2.0.downsample.0", "layer2.0.downsample.1") in pairs


def test_efficientnet_lite_convolutions_with_their_own_forward_are_folded_too():
    backbone = build_fresh("efficientnet_lite0")

    pairs = batchnorm_pairs(backbone.module)

    assert ("_conv_stem", "_bn0") in pairs and len(pairs) > 40


def test_reading_a_convolution_itself_leaves_that_pair_unfolded_so_the_value_is_the_convolution_output():
    backbone = with_trained_batchnorm_statistics(build_fresh("resnet18"))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layers = ["layer1.0.conv1", "layer1.0.bn1"]
    plain = [representation_and_input_gradient(backbone, x, layer) for layer in layers]

    folded = []
    for layer in layers:
        with backbone.batchnorm_folded(keep_layer=layer):
            folded.append(representation_and_input_gradient(backbone, x, layer))

    for (rep, grad), (plain_rep, plain_grad) in zip(folded, plain):
        assert close(rep, plain_rep) and close(grad, plain_grad)


def test_the_model_is_put_back_exactly_after_the_block_even_when_it_fails():
    backbone = with_trained_batchnorm_statistics(build_fresh("resnet18"))
    before = {k: v.clone() for k, v in backbone.module.state_dict().items()}
    parameters_before = [id(p) for p in backbone.module.parameters()]

    with pytest.raises(RuntimeError, match="cancelled"):
        with backbone.batchnorm_folded():
            assert backbone.module.conv1.bias is not None  # folded: the convolution took the BatchNorm's shift
            raise RuntimeError("cancelled")

    after = backbone.module.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert [id(p) for p in backbone.module.parameters()] == parameters_before
    assert backbone.module.conv1.bias is None
    assert not any("forward" in vars(m) for m in backbone.module.modules() if isinstance(m, nn.BatchNorm2d))


class DataDependent(nn.Module):
    """Python control flow on a tensor value: symbolic tracing cannot follow it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y if y.mean() > 0 else -y


def test_a_model_that_cannot_be_traced_runs_unfolded():
    assert batchnorm_pairs(DataDependent().eval()) == []


def test_an_inversion_gives_the_same_images_folded_as_the_plain_model_does():
    """invert folds for the run; the same run on a model without BatchNorm folding to do is the check."""
    backbone = with_trained_batchnorm_statistics(build_fresh("resnet18"))
    targets = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    spec = InversionSpec(backbone="resnet18", image_size=32, steps=5, rng_seed=0)

    folded = invert(spec, targets, backbone=backbone)
    backbone._batchnorm_pairs = []  # nothing to fold: the plain model
    plain = invert(spec, targets, backbone=backbone)

    assert torch.allclose(folded.losses, plain.losses, rtol=1e-3, atol=1e-5)
    assert torch.allclose(folded.images, plain.images, atol=1e-3)
