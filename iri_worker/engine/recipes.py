"""Named loss recipes, stored as plain JSON-able data and turned into a Loss on demand."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from .losses import TERMS, Loss

__all__ = ["RECIPES", "build_loss"]

# name -> list of {"term": <key of losses.TERMS>, "weight": float[, "params": {...}]}
RECIPES: dict[str, list[dict[str, Any]]] = {
    "reg_free": [{"term": "representation_distance", "weight": 1.0}],
}

_TERM_KEYS = {"term", "weight", "params"}


def build_loss(recipe: str | Sequence[Mapping[str, Any]]) -> Loss:
    """A ``Loss`` from a recipe name in ``RECIPES`` or from an explicit term list.

    A named recipe prints as its name (``str(build_loss("reg_free")) == "reg_free"``);
    a term list prints as the weighted sum (``"10*rep + 0.0005*tv"``).
    """
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"Unknown recipe '{recipe}'. Available: {', '.join(sorted(RECIPES))}.")
        return _compose(RECIPES[recipe]).named(recipe)
    return _compose(recipe)


def _compose(terms: Sequence[Mapping[str, Any]]) -> Loss:
    if isinstance(terms, (str, bytes)) or not isinstance(terms, Sequence) or not terms:
        raise ValueError("A recipe must be a non-empty list of terms.")
    parts: list[Loss] = []
    for item in terms:
        if not isinstance(item, Mapping) or not set(item) <= _TERM_KEYS or "term" not in item:
            raise ValueError(f"Each recipe term must be a dict with keys {sorted(_TERM_KEYS)}; got {item!r}.")
        name, weight = item["term"], item.get("weight", 1.0)
        if name not in TERMS:
            raise ValueError(f"Unknown loss term '{name}'. Available: {', '.join(sorted(TERMS))}.")
        if not isinstance(weight, numbers.Real) or isinstance(weight, bool):
            raise ValueError(f"Weight of term '{name}' must be a number, got {weight!r}.")
        loss = TERMS[name](**dict(item.get("params") or {}))
        parts.append(loss if weight == 1 else weight * loss)
    return sum(parts[1:], parts[0])
