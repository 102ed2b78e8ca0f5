"""Each registered backbone's static description (catalog.Architecture: what the spec check, the admin and the API
read instead of building a model) is what building the model gives, so the recorded data cannot drift."""
import pytest

from iri_worker.engine import Architecture, Backbone, InversionSpec, describe_backbone, layer_names, list_backbones
from iri_worker.engine import backbones as registry

HEAVY = {"alexnet", "densenet121", "efficientnet_b0", "inception_v3", "resnet50", "vgg16", "vgg16_bn", "vit_b_16"}


def registry_params():
    return [pytest.param(n, marks=pytest.mark.heavy) if n in HEAVY else n for n in list_backbones()]


@pytest.mark.parametrize("name", registry_params())
def test_the_static_description_of_every_backbone_is_what_building_it_gives(name):
    built = registry._BUILDERS[name](None)  # fresh, not the per-process cache: big models are freed after the test
    built.module.eval().requires_grad_(False)  # as load_backbone leaves it (Inception's auxiliary head runs in training)
    described = describe_backbone(name)

    assert described.layer_names() == built.layer_names(), (
        f"the layer names recorded for {name} drifted from its architecture: run scripts/record_layer_names.py")
    assert (described.input_size, described.default_layer, described.fixed_size, described.min_size) == (
        built.input_size, built.default_layer, built.fixed_size, built.min_size)
    assert described.supports_fake_relu == built.supports_fake_relu
    assert described.supports_channels_last == built.supports_channels_last
    assert described.stage_names() == list(built.stages or (built.default_layer,))
    assert set(described.stage_names()) <= set(described.layer_names())


def test_no_layer_names_are_recorded_for_a_backbone_that_is_not_registered():
    from iri_worker.engine.catalog import _recorded

    assert set(_recorded()) == set(list_backbones())


def test_checking_a_spec_builds_no_model(monkeypatch):
    """Validating and resolving every field that depends on the backbone reads its description only."""
    def no_build(*args, **kwargs):
        raise AssertionError("a backbone was built to check a spec")

    monkeypatch.setattr(registry, "_load_cached", no_build)
    for name in list_backbones():
        monkeypatch.setitem(registry._BUILDERS, name, no_build)

    spec = InversionSpec.from_dict({"backbone": "resnet18", "layer": "layer3", "image_size": 64,
                                    "transforms": "imagenet", "channels_last": True})
    assert spec.to_dict()["layer"] == "layer3" and spec.to_dict()["fake_relu"] is True
    assert InversionSpec.from_dict({"backbone": "vit_b_16"}).to_dict()["image_size"] == 224
    with pytest.raises(ValueError, match="Unknown layer 'layer5'.*Did you mean"):
        InversionSpec.from_dict({"backbone": "resnet18", "layer": "layer5"})
    with pytest.raises(ValueError, match="accepts only 224x224"):
        InversionSpec.from_dict({"backbone": "vit_b_16", "image_size": 64})
    with pytest.raises(ValueError, match="runs only the NCHW layout"):
        InversionSpec.from_dict({"backbone": "vit_b_16", "channels_last": True})
    assert "layer4.1.final_relu" in layer_names("resnet18")


def test_an_architecture_registered_with_its_layers_is_checked_without_building(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_ARCHITECTURES", dict(registry._ARCHITECTURES))
    probe = Architecture("probe_net", input_size=8, default_layer="1", layers=("0", "1"))

    @registry.register_backbone(probe)
    def build(weights_path) -> Backbone:
        raise AssertionError("never built")

    assert InversionSpec.from_dict({"backbone": "probe_net", "layer": "0"}).to_dict()["image_size"] == 8
    with pytest.raises(ValueError, match="Unknown layer '2'"):
        InversionSpec.from_dict({"backbone": "probe_net", "layer": "2"})
