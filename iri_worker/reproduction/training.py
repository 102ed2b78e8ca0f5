"""The two networks of the reproduction: a small ResNet trained standard or L2-PGD adversarially, and its accuracy."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


from .data import MEAN, STD, ReproductionConfig


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet with three stages of one basic block (widths w, 2w, 4w); penultimate = ``avgpool``."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 4 * width, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def normalized(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The classifier on [0, 1] inputs (normalisation inside, as the engine's backbone does it)."""
    device = next(model.parameters()).device
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return lambda x: model((x - mean) / std)


# --------------------------------------------------------------------------- attack and training


def augment(x: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Each image shifted by up to ``shift`` pixels (zero fill, like the black background) and
    flipped left-right with probability 1/2; the draws come from ``generator`` (on the CPU)."""
    n, _, h, w = x.shape
    dy, dx = (torch.randint(-shift, shift + 1, (n,), generator=generator).tolist() for _ in range(2))
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    padded = F.pad(torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), (shift,) * 4)
    return torch.stack([padded[i, :, shift + dy[i]:shift + dy[i] + h, shift + dx[i]:shift + dx[i] + w]
                        for i in range(n)])


def pgd_l2(classify, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, step_size: float,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Untargeted L2 PGD (Madry et al.): ascend the cross-entropy in normalised-gradient steps, project
    onto the eps-ball around ``x`` and the [0, 1] box. A random start inside the ball when a generator
    is given (training), none otherwise (evaluation)."""
    delta = torch.zeros_like(x)
    if generator is not None:  # drawn on the CPU so a run is the same on every device
        delta = torch.randn(x.shape, generator=generator)
        delta = delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps * torch.rand(
            (x.shape[0], 1, 1, 1), generator=generator)
        delta = delta.to(x.device)
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        loss = F.cross_entropy(classify((x + delta).clamp(0, 1)), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + step_size * grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
            norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            delta = delta * (eps / norm.clamp_min(eps))
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def train_model(config: ReproductionConfig, x: torch.Tensor, y: torch.Tensor, *, adversarial: bool,
                log: Callable[[str], None] = lambda _: None) -> SmallResNet:
    """Train a SmallResNet with Adam (one-cycle schedule); on PGD examples when ``adversarial``."""
    generator = torch.Generator().manual_seed(config.rng_seed + (1 if adversarial else 0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.rng_seed)
        model = SmallResNet(config.width).to(x.device)
    classify = normalized(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = (len(x) + config.batch_size - 1) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=config.epochs * batches)
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        seen = correct = 0
        for b in range(batches):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size].to(x.device)
            xb, yb = x[idx], y[idx]
            if config.augment:
                xb = augment(xb, generator)
            if adversarial:
                model.eval()  # attack the current model with fixed BN statistics
                xb = pgd_l2(classify, xb, yb, eps=config.eps, steps=config.attack_steps,
                            step_size=config.attack_step_size, generator=generator)
            model.train()
            logits = classify(xb)
            loss = F.cross_entropy(logits, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            seen += len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        log(f"{'robust' if adversarial else 'standard'} epoch {epoch + 1}/{config.epochs}: "
            f"train accuracy {correct / seen:.3f}")
    return model.eval().requires_grad_(False)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 0.0, steps: int = 0,
             batch_size: int = 250) -> float:
    """Share classified correctly, on clean inputs or under L2 PGD (eps, steps, step 2.5·eps/steps)."""
    classify = normalized(model.eval())
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if eps > 0:
            with torch.enable_grad():
                xb = pgd_l2(classify, xb, yb, eps=eps, steps=steps, step_size=2.5 * eps / steps)
        with torch.no_grad():
            correct += int((classify(xb).argmax(1) == yb).sum())
    return correct / len(x)


# --------------------------------------------------------------------------- one run: data, models, IRI sets
