import pytest
import torch

from iri_worker.engine import Backbone, layer_names, list_backbones, load_backbone, register_backbone
from iri_worker.engine import backbones as registry


def no_hooks_left(module: torch.nn.Module) -> bool:
    return all(not m._forward_hooks for m in module.modules())


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_gives_one_feature_vector_per_image_at_its_default_layer(name):
    backbone = load_backbone(name)
    size = min(backbone.input_size, 64)  # small inputs keep the pretrained nets fast
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))

    feats = backbone.features(x)

    assert feats.dim() == 2 and feats.shape[0] == 2 and feats.shape[1] > 0
    assert torch.isfinite(feats).all()
    assert backbone.default_layer in layer_names(name)
    assert no_hooks_left(backbone.module)


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_is_frozen_and_in_eval_mode(name):
    backbone = load_backbone(name)
    assert not backbone.module.training
    assert not any(p.requires_grad for p in backbone.module.parameters())


def test_penultimate_features_have_the_documented_widths():
    x = torch.rand(1, 3, 64, 64)
    assert load_backbone("efficientnet_lite0").features(x).shape == (1, 1280)
    assert load_backbone("resnet18").features(x).shape == (1, 512)
    assert load_backbone("tiny_cnn").features(x[..., :32, :32]).shape == (1, 32)


def test_the_penultimate_layer_is_the_pooled_input_of_the_classifier(tiny):
    x = torch.rand(3, 3, 32, 32)
    feats = tiny.features(x)
    logits = tiny.module.fc(feats)
    assert torch.allclose(logits, tiny.module(tiny.normalize(x)), atol=1e-6)


def test_efficientnet_lite0_uses_tensorflow_style_preprocessing():
    backbone = load_backbone("efficientnet_lite0")
    x = torch.tensor([0.0, 127 / 255, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    expected = (x * 255 - 127) / 128
    assert torch.allclose(backbone.normalize(x), expected, atol=1e-6)


def test_a_backbone_is_loaded_once_per_process():
    assert load_backbone("tiny_cnn") is load_backbone("tiny_cnn", device="cpu")


def test_an_intermediate_layer_is_flattened_per_image(tiny):
    feats = tiny.features(torch.rand(2, 3, 32, 32), "conv1")
    assert feats.shape == (2, 16 * 32 * 32)


def test_gradients_flow_from_features_back_to_the_pixels_but_not_into_the_model(tiny):
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    tiny.features(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.module.parameters())


def test_pixels_pinned_at_0_or_1_still_get_a_gradient(tiny):
    # The [0,1] projection pins many pixels to a bound; they must be able to move back.
    x = torch.zeros(1, 3, 32, 32)
    x[..., ::2] = 1.0
    x.requires_grad_(True)
    tiny.features(x).square().sum().backward()
    assert (x.grad != 0).float().mean() > 0.5


def test_an_unknown_backbone_is_refused_with_a_hint():
    with pytest.raises(ValueError) as error:
        load_backbone("resnet81")
    message = str(error.value)
    assert "Unknown backbone 'resnet81'" in message
    assert "Available: efficientnet_lite0" in message
    assert "resnet18" in message


def test_an_unknown_layer_is_refused_with_a_hint_and_hooks_are_removed(tiny):
    with pytest.raises(ValueError) as error:
        tiny.features(torch.rand(1, 3, 32, 32), "conv")
    message = str(error.value)
    assert "'conv'" in message and "layer_names('tiny_cnn')" in message
    assert "conv1" in message
    assert no_hooks_left(tiny.module)


def test_modules_that_run_twice_per_forward_are_not_offered_as_layers():
    # torchvision's BasicBlock calls one `relu` twice; its output would be ambiguous.
    names = layer_names("resnet18")
    assert "layer4.1.relu" not in names
    assert "layer4.1" in names and "avgpool" in names


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny_cnn")(lambda weights_path: None)
    assert list_backbones().count("tiny_cnn") == 1


def test_a_new_backbone_can_be_registered_and_loaded(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))  # leave the real registry alone

    @register_backbone("linear_probe")
    def build(weights_path):
        module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        return Backbone("linear_probe", module, 8, (0.5,) * 3, (0.5,) * 3, default_layer="1")

    assert "linear_probe" in list_backbones()
    backbone = load_backbone("linear_probe")
    assert backbone.features(torch.rand(5, 3, 8, 8)).shape == (5, 4)
    assert not any(p.requires_grad for p in backbone.module.parameters())


def test_weights_are_read_from_a_local_checkpoint_in_common_formats(tmp_path):
    fresh = registry.TinyCNN()
    torch.nn.init.constant_(fresh.fc.bias, 0.25)
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in fresh.state_dict().items()}}, path)

    backbone = load_backbone("tiny_cnn", weights_path=str(path))

    assert backbone is not load_backbone("tiny_cnn")
    assert torch.equal(backbone.module.fc.bias, torch.full((10,), 0.25))


def test_the_random_tiny_model_is_the_same_in_every_build():
    a, b = registry._BUILDERS["tiny_cnn"](None), registry._BUILDERS["tiny_cnn"](None)
    for pa, pb in zip(a.module.parameters(), b.module.parameters()):
        assert torch.equal(pa, pb)


def test_building_a_backbone_does_not_disturb_the_global_random_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    registry._BUILDERS["tiny_cnn"](None)
    assert torch.equal(torch.rand(3), expected)


def test_loading_the_pretrained_backbone_prints_nothing(capfd):
    registry._BUILDERS["efficientnet_lite0"](None)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
