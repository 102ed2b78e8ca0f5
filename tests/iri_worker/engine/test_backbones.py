import pytest
import torch

from iri_worker.engine import Architecture, Backbone, layer_names, list_backbones, load_backbone, register_backbone
from iri_worker.engine import architectures
from iri_worker.engine import backbones as registry
from iri_worker.engine.checkpoints import checkpoint_sha256


def no_hooks_left(module: torch.nn.Module) -> bool:
    return all(not m._forward_hooks for m in module.modules())


HEAVY = {"alexnet", "densenet121", "efficientnet_b0", "inception_v3", "resnet50", "vgg16", "vgg16_bn", "vit_b_16"}


def build_fresh(name):
    """Build an entry without the per-process cache (so big models are freed after the test)."""
    backbone = registry._BUILDERS[name](None)
    backbone.module.eval().requires_grad_(False)
    return backbone


def registry_params():
    return [pytest.param(n, marks=pytest.mark.heavy) if n in HEAVY else n for n in list_backbones()]


@pytest.mark.parametrize("name", registry_params())
def test_every_registered_backbone_builds_offline_and_yields_a_representation_at_its_default_layer(name):
    backbone = build_fresh(name)
    size = backbone.input_size if backbone.fixed_size else max(backbone.min_size, 32)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)

    feats = backbone.features(x)
    feats.sum().backward()

    assert feats.dim() == 2 and feats.shape[0] == 1 and feats.shape[1] > 0
    assert torch.isfinite(feats).all() and torch.isfinite(x.grad).all()
    assert not any(p.requires_grad for p in backbone.module.parameters())
    assert no_hooks_left(backbone.module)
    assert len(backbone.mean) == len(backbone.std) == 3 and backbone.input_size >= size
    assert dict(backbone.module.named_modules())[backbone.default_layer] is not None


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18", "efficientnet_lite0"])
def test_the_default_layer_is_among_the_layer_names_offered_to_the_admin(name):
    assert load_backbone(name).default_layer in layer_names(name)


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18", "efficientnet_lite0"])
def test_a_loaded_backbone_is_frozen_and_in_eval_mode(name):
    backbone = load_backbone(name)
    assert not backbone.module.training
    assert not any(p.requires_grad for p in backbone.module.parameters())


def test_the_torchvision_architectures_the_paper_uses_are_registered():
    assert {"resnet18", "resnet50", "vgg16", "vgg16_bn", "densenet121", "inception_v3", "alexnet",
            "efficientnet_b0", "vit_b_16", "efficientnet_lite0"} <= set(list_backbones())


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


def test_the_normaliser_skips_its_clamp_only_where_the_caller_vouches_for_the_box(tiny):
    inside = torch.rand(2, 3, 32, 32)
    inside[..., ::3] = 1.0  # pinned pixels keep gradient 1 either way
    pair = [inside.clone().requires_grad_(True) for _ in range(2)]
    checked, trusted = tiny.normalize(pair[0]), tiny.normalize(pair[1], in_box=True)
    assert torch.equal(checked, trusted)
    checked.square().sum().backward()
    trusted.square().sum().backward()
    assert torch.equal(pair[0].grad, pair[1].grad)
    outside = inside * 3 - 1
    assert torch.equal(tiny.normalize(outside), tiny.normalize(outside.clamp(0, 1), in_box=True))


def test_a_channels_last_batch_is_normalised_in_its_own_layout(tiny):
    x = torch.rand(2, 3, 32, 32)
    channels_last = tiny.normalize(x.contiguous(memory_format=torch.channels_last))
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(channels_last, tiny.normalize(x))


def test_an_unknown_backbone_is_refused_with_a_hint():
    with pytest.raises(ValueError) as error:
        load_backbone("resnet81")
    message = str(error.value)
    assert "Unknown backbone 'resnet81'" in message
    assert "efficientnet_lite0" in message and "Did you mean 'resnet18'" in message


def test_an_unknown_layer_is_refused_with_a_hint_and_hooks_are_removed(tiny):
    with pytest.raises(ValueError) as error:
        tiny.features(torch.rand(1, 3, 32, 32), "conv")
    message = str(error.value)
    assert "'conv'" in message and "layer_names('tiny_cnn')" in message
    assert "Valid layers" in message and all(name in message for name in layer_names("tiny_cnn"))
    assert no_hooks_left(tiny.module)


def test_modules_that_run_twice_per_forward_are_not_offered_as_layers():
    # torchvision's BasicBlock calls one `relu` twice; its output would be ambiguous.
    names = layer_names("resnet18")
    assert "layer4.0.relu" not in names
    assert "layer4.1" in names and "avgpool" in names


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(Architecture("tiny_cnn", input_size=32, default_layer="pool"))(lambda weights_path: None)
    assert list_backbones().count("tiny_cnn") == 1


def test_a_new_backbone_can_be_registered_and_loaded(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))  # leave the real registry alone
    monkeypatch.setattr(registry, "_ARCHITECTURES", dict(registry._ARCHITECTURES))
    architecture = Architecture("linear_probe", input_size=8, default_layer="1", layers=("0", "1"))

    @register_backbone(architecture)
    def build(weights_path):
        module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        return Backbone.of(architecture, module, mean=(0.5,) * 3, std=(0.5,) * 3)

    assert "linear_probe" in list_backbones()
    backbone = load_backbone("linear_probe")
    assert backbone.features(torch.rand(5, 3, 8, 8)).shape == (5, 4)
    assert not any(p.requires_grad for p in backbone.module.parameters())


def test_weights_are_read_from_a_local_checkpoint_in_common_formats(tmp_path):
    fresh = architectures.TinyCNN()
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


# --------------------------------------------------------------------------- FakeReLU


def test_fake_relu_changes_the_gradient_but_never_the_representation(tiny):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))

    def run(fake):
        tiny.set_fake_relu(fake)
        try:
            xg = x.clone().requires_grad_(True)
            feats = tiny.features(xg)
            feats.sum().backward()
            return feats.detach(), xg.grad
        finally:
            tiny.set_fake_relu(False)

    plain_feats, plain_grad = run(False)
    fake_feats, fake_grad = run(True)
    assert torch.equal(plain_feats, fake_feats)
    assert not torch.allclose(plain_grad, fake_grad)


def test_fake_relu_lets_gradient_through_dead_units():
    relu = registry.SwitchableReLU()
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    relu.fake = True
    relu(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_resnet_gets_a_fake_relu_on_the_last_block_only_and_keeps_its_weights_layout():
    backbone = load_backbone("resnet18")
    assert backbone.supports_fake_relu and backbone.fake_relu_modules == (backbone.module.layer4[1].final_relu,)
    assert "layer4.1.final_relu" in layer_names("resnet18")
    from torchvision.models import resnet18

    assert set(backbone.module.state_dict()) == set(resnet18(weights=None).state_dict())


def test_nets_whose_last_activation_is_not_a_relu_have_no_fake_relu():
    assert not load_backbone("efficientnet_lite0").supports_fake_relu


# --------------------------------------------------------------------------- checkpoints


def tiny_weights(bias=0.25):
    fresh = architectures.TinyCNN()
    torch.nn.init.constant_(fresh.fc.bias, bias)
    return fresh.state_dict()


def test_a_plain_state_dict_checkpoint_is_loaded_and_its_hash_recorded(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(tiny_weights(), path)
    backbone = load_backbone("tiny_cnn", weights_path=str(path))
    assert torch.equal(backbone.module.fc.bias, torch.full((10,), 0.25))
    assert backbone.checkpoint_sha256 == checkpoint_sha256(str(path))
    assert len(backbone.checkpoint_sha256) == 64


def test_a_madrylab_robustness_checkpoint_keeps_only_the_model_weights(tmp_path):
    state = tiny_weights(0.5)
    checkpoint = {
        "model": {
            **{f"module.model.{k}": v for k, v in state.items()},
            **{f"module.attacker.model.{k}": v * 0 for k, v in state.items()},
            "module.normalizer.new_mean": torch.zeros(3, 1, 1),
            "module.normalizer.new_std": torch.ones(3, 1, 1),
        },
        "epoch": 90,
    }
    path = tmp_path / "resnet-18-l2-eps3.ckpt"
    torch.save(checkpoint, path)
    backbone = load_backbone("tiny_cnn", weights_path=str(path))
    assert torch.equal(backbone.module.fc.bias, torch.full((10,), 0.5))
    assert torch.equal(backbone.module.conv1.weight, state["conv1.weight"])


def test_a_simclr_checkpoint_loses_its_projection_head_and_keeps_the_backbone(tmp_path):
    state = tiny_weights()
    checkpoint = {"state_dict": {
        **{f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")},
        "backbone.fc.0.weight": torch.zeros(32, 32),  # sthalles/SimCLR: the MLP head sits in fc
        "backbone.fc.2.weight": torch.zeros(128, 32),
        "projector.0.weight": torch.zeros(128, 32),
    }}
    path = tmp_path / "simclr.ckpt"
    torch.save(checkpoint, path)
    backbone = load_backbone("tiny_cnn", weights_path=str(path))
    assert torch.equal(backbone.module.conv2.weight, state["conv2.weight"])
    assert backbone.features(torch.rand(1, 3, 32, 32)).shape == (1, 32)


def test_a_checkpoint_whose_keys_do_not_fit_says_which(tmp_path):
    state = tiny_weights()
    state.pop("conv2.bias")
    state["conv3.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(5, 32)
    path = tmp_path / "wrong.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        load_backbone("tiny_cnn", weights_path=str(path))
    message = str(error.value)
    assert "missing keys (1): conv2.bias" in message
    assert "unexpected keys (1): conv3.weight" in message
    assert "fc.weight (5, 32) vs (10, 32)" in message


class _Exploit:
    """Unpickling this would create a marker file (if the loader ever executed it)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_checkpoint_is_refused_and_never_executed(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": _Exploit(str(marker))}, handle, protocol=2)
    with pytest.raises(ValueError, match="Refused checkpoint"):
        load_backbone("tiny_cnn", weights_path=str(path))
    assert not marker.exists()
    # ... and the same file in torch's zip format
    torch_path = tmp_path / "evil_zip.pt"
    torch.save({"state_dict": _Exploit(str(marker))}, torch_path)
    with pytest.raises(ValueError, match="weights_only"):
        load_backbone("tiny_cnn", weights_path=str(torch_path))
    assert not marker.exists()


def test_a_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_backbone("tiny_cnn", weights_path=str(tmp_path / "nope.pt"))


def test_building_the_registry_never_touches_the_network(monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    for name in ("resnet18", "efficientnet_lite0", "tiny_cnn"):
        build_fresh(name)


def test_the_papers_robust_resnet18_checkpoint_layout_loads_into_the_torchvision_architecture(tmp_path):
    from torchvision.models import resnet18

    donor = resnet18(weights=None).state_dict()
    checkpoint = {"model": {**{f"module.model.{k}": v for k, v in donor.items()},
                            "module.normalizer.new_mean": torch.zeros(3, 1, 1),
                            "module.normalizer.new_std": torch.ones(3, 1, 1)}, "epoch": 90}
    path = tmp_path / "resnet-18-l2-eps3.ckpt"
    torch.save(checkpoint, path)
    backbone = load_backbone("resnet18", weights_path=str(path))
    assert torch.equal(backbone.module.layer4[1].conv2.weight, donor["layer4.1.conv2.weight"])
    assert backbone.supports_fake_relu


def test_the_spec_leaves_an_unnamed_layout_to_measurement():
    from iri_worker.engine import InversionSpec

    resnet = load_backbone("resnet18")
    # a rule fits one CPU only: a run with no layout named times both on its host (test_layout.py)
    assert InversionSpec(backbone="resnet18", image_size=32).resolved(resnet).channels_last is None
    assert InversionSpec(backbone="resnet18", image_size=32, channels_last=True).resolved(resnet).channels_last
