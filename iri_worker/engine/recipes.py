"""Named loss recipes, stored as plain JSON-able data and turned into a Loss on demand.

A recipe is a name in ``RECIPES`` or a researcher-defined list of terms::

    [{"term": "representation_distance", "weight": 10},
     {"term": "total_variation", "weight": 0.0005, "beta": 2}]

Each term is ``{"term": <key of losses.TERMS>, "weight": <number>, ...params}``;
params may also be nested as ``"params": {...}`` (the stored, canonical form,
see ``expand_recipe``). The paper's recipes (section 1.3) weight the
representation term by 10 in every composite. The adversarial recipes (1.4)
use an offline distance D that is NOT the inverted network:

==================  ====================================================================
adv_ms_ssim         rep - c*(1 - MS-SSIM(x, x_t)), c adaptive (paper: adv_alex_imagenet)
adv_ms_ssim_seed    rep + 10*(1 - MS-SSIM(x, x_0))  (paper: adv_*_seed, c = 10)
adv_ssim            rep - c*(1 - SSIM(x, x_t)), c adaptive
adv_ssim_seed       rep + 10*(1 - SSIM(x, x_0))
adv_lpips           rep - 10*LPIPS(x, x_t) (paper: adv_alex_finetuned); needs LPIPS offline
adv_lpips_seed      rep + 10*LPIPS(x, x_0); needs LPIPS offline
==================  ====================================================================
"""

from __future__ import annotations

import copy
import difflib
import inspect
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from .losses import TERMS, Loss

__all__ = [
    "RECIPES", "build_loss", "expand_recipe", "recipe_uses_metric", "recipe_has_adaptive_c", "with_adversarial_c",
]


def _rep(weight: float) -> dict[str, Any]:
    return {"term": "representation_distance", "weight": weight}


def _adv(metric: str, reference: str, c: float | str) -> list[dict[str, Any]]:
    return [{"term": "adversarial", "weight": 1.0, "params": {"metric": metric, "reference": reference, "c": c}}]


_TV = {"term": "total_variation", "weight": 0.0005, "params": {"beta": 2.0}}
_BLUR = {"term": "blur", "weight": 0.0005}
_L1 = {"term": "l1", "weight": 0.00005, "params": {"center": 0.5}}

# name -> list of {"term": <key of losses.TERMS>, "weight": float[, "params": {...}]}
RECIPES: dict[str, list[dict[str, Any]]] = {
    "reg_free": [_rep(1.0)],
    "freq": [_rep(10.0), _TV, _BLUR, _L1],
    "freq_tv": [_rep(10.0), _TV],
    "freq_blur": [_rep(10.0), _BLUR],
    "freq_lp": [_rep(10.0), _L1],
    "freq_tv_l6": [_rep(10.0), _TV, {"term": "lp", "weight": 1.0, "params": {"p": 6.0}}],
    "adv_ms_ssim": _adv("ms_ssim", "target", "adaptive"),
    "adv_ms_ssim_seed": _adv("ms_ssim", "seed", 10.0),
    "adv_ssim": _adv("ssim", "target", "adaptive"),
    "adv_ssim_seed": _adv("ssim", "seed", 10.0),
    "adv_lpips": _adv("lpips", "target", 10.0),
    "adv_lpips_seed": _adv("lpips", "seed", 10.0),
}


def _term_params(name: str) -> list[str]:
    return list(inspect.signature(TERMS[name]).parameters)


def expand_recipe(recipe: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The canonical term list: ``[{"term", "weight" (float), "params" (dict)}]``.

    Validates everything ``build_loss`` would (unknown recipe/term/param, bad
    weight) and raises ``ValueError`` with a hint. A name expands to a copy of
    its terms, so the stored list keeps the weights even if ``RECIPES`` changes.
    """
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            close = difflib.get_close_matches(recipe, RECIPES, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"Unknown recipe '{recipe}'. Available: {', '.join(sorted(RECIPES))}.{hint}")
        recipe = RECIPES[recipe]
    if isinstance(recipe, (str, bytes)) or not isinstance(recipe, Sequence) or not recipe:
        raise ValueError("A recipe must be a recipe name or a non-empty list of terms.")
    terms = []
    for item in recipe:
        if not isinstance(item, Mapping) or "term" not in item:
            raise ValueError(
                "Each recipe term must be a dict like "
                f"{{\"term\": \"total_variation\", \"weight\": 0.0005}}; got {item!r}."
            )
        name = item["term"]
        if not isinstance(name, str) or name not in TERMS:
            close = difflib.get_close_matches(str(name), TERMS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"Unknown loss term '{name}'. Available: {', '.join(sorted(TERMS))}.{hint}")
        weight = item.get("weight", 1.0)
        if not isinstance(weight, numbers.Real) or isinstance(weight, bool) or weight != weight:
            raise ValueError(f"Weight of term '{name}' must be a number, got {weight!r}.")
        nested = item.get("params") or {}
        if not isinstance(nested, Mapping):
            raise ValueError(f"params of term '{name}' must be a dict, got {nested!r}.")
        params = {**nested, **{k: v for k, v in item.items() if k not in ("term", "weight", "params")}}
        allowed = _term_params(name)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(
                f"Term '{name}' has no parameter {', '.join(repr(k) for k in unknown)}; "
                f"it takes {', '.join(allowed) if allowed else 'no parameters'}."
            )
        TERMS[name](**params)  # validates the parameter values (ValueError with a reason)
        terms.append({"term": name, "weight": float(weight), "params": copy.deepcopy(dict(params))})
    return terms


def build_loss(recipe: str | Sequence[Mapping[str, Any]]) -> Loss:
    """A ``Loss`` from a recipe name in ``RECIPES`` or from an explicit term list.

    A named recipe prints as its name (``str(build_loss("reg_free")) == "reg_free"``);
    a term list prints as the weighted sum (``"10*rep + 0.0005*tv"``).
    """
    terms = expand_recipe(recipe)
    parts = [
        loss if item["weight"] == 1 else item["weight"] * loss
        for item in terms
        for loss in [TERMS[item["term"]](**item["params"])]
    ]
    loss = sum(parts[1:], parts[0])
    return loss.named(recipe) if isinstance(recipe, str) else loss


def recipe_uses_metric(recipe: str | Sequence[Mapping[str, Any]], metric: str) -> bool:
    """Whether any term of the recipe compares images with ``metric`` (e.g. "lpips")."""
    return any(t["params"].get("metric") == metric for t in expand_recipe(recipe))


def recipe_has_adaptive_c(recipe: str | Sequence[Mapping[str, Any]]) -> bool:
    """Whether any term of the recipe measures its weight c adaptively (``"c": "adaptive"``)."""
    return any(t["params"].get("c") == "adaptive" for t in expand_recipe(recipe))


def with_adversarial_c(recipe: str | Sequence[Mapping[str, Any]], c: float) -> list[dict[str, Any]]:
    """The recipe's term list with every adaptive ``c`` replaced by the number ``c``.

    For jobs split into chunks: run the first chunk with c adaptive, read
    ``result.adversarial_c`` and run the other chunks with this recipe, so the
    whole job uses one c, measured on its first batch (as the paper did).
    """
    terms = expand_recipe(recipe)
    for term in terms:
        if term["params"].get("c") == "adaptive":
            term["params"]["c"] = float(c)
    return terms
