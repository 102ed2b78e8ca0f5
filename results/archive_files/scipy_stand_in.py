"""numpy in place of scipy for a study archive's reanalyse.py: the statistics modules copied beside this file import
scipy at the top; ``install()`` gives them numpy stand-ins for the parts they use (Student's t quantile, the normal
cdf), so that the archive needs only Python and numpy."""
from __future__ import annotations

import math
import sys
import types

import numpy as np


def _t_cdf(t: float, df: float) -> float:
    """Student's t cdf through the regularised incomplete beta function (continued fraction, Numerical Recipes)."""
    x, y = df / (df + t * t), t * t / (df + t * t)  # y = 1 - x without the cancellation near t = 0
    if y == 0:
        return 0.5
    a, b = df / 2, 0.5
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y))

    def fraction(a, b, x):
        tiny, c, d = 1e-300, 1.0, 1 - (a + b) * x / (a + 1)
        d = 1 / (d if abs(d) > tiny else tiny)
        h = d
        for m in range(1, 500):
            even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            for num in (even, odd):
                d = 1 + num * d
                d = 1 / (d if abs(d) > tiny else tiny)
                c = 1 + num / c
                c = c if abs(c) > tiny else tiny
                h *= d * c
            if abs(d * c - 1) < 1e-16:
                break
        return h

    if x < (a + 1) / (a + b + 2):
        ibeta = front * fraction(a, b, x) / a
    else:
        ibeta = 1 - front * fraction(b, a, y) / b
    tail = 0.5 * ibeta
    return 1 - tail if t > 0 else tail


def _t_ppf(q: float, df: float) -> float:
    low, high = -1e3, 1e3
    for _ in range(200):  # bisection to the last bit
        mid = (low + high) / 2
        if mid in (low, high):
            break
        if _t_cdf(mid, df) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def install() -> None:
    """The analysis modules import scipy at the top; give them numpy stand-ins for the parts they use."""
    scipy = types.ModuleType("scipy")
    sparse = types.ModuleType("scipy.sparse")  # used only by the sparse bootstrap, which numpy_bootstrap replaces
    stats = types.ModuleType("scipy.stats")
    stats.norm = types.SimpleNamespace(cdf=lambda z: 0.5 * (1 + math.erf(float(z) / math.sqrt(2))))
    stats.t = types.SimpleNamespace(ppf=lambda q, df: np.vectorize(_t_ppf, otypes=[float])(q, df))
    scipy.sparse, scipy.stats = sparse, stats
    sys.modules.update({"scipy": scipy, "scipy.sparse": sparse, "scipy.stats": stats})
