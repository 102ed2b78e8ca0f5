"""Paper-friendly figures of a report (matplotlib, Agg): PNG, SVG or PDF bytes. Reads only the report dict."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLOTS = ("alignment", "proxy", "fill")
FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
STYLE = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100,
    "savefig.dpi": 300, "savefig.bbox": "tight", "pdf.fonttype": 42, "svg.fonttype": "none", "font.family": "DejaVu Sans",
}


def _label(c: dict) -> str:
    return c.get("condition") or c.get("name") or str(c.get("iri_set"))


def _alignment(ax, report: dict) -> None:
    rows = [c for c in report["conditions"] if c["alignment"] is not None]
    ys = list(range(len(rows)))
    for y, c in zip(ys, rows):
        if c["ci_low"] is not None:
            ax.plot([c["ci_low"], c["ci_high"]], [y, y], color="0.2", lw=1.2)
        ax.plot([c["alignment"]], [y], "o", color="C0", ms=4)
    ax.axvline(report.get("chance") or 0.5, color="0.5", ls="--", lw=0.8, label="chance")
    ax.set_yticks(ys, [_label(c) for c in rows])
    if rows:
        ax.set_ylim(len(rows) - 0.5, -0.5)  # the first condition on top, as in a table
    ax.set_xlim(0, 1)
    ax.set_xlabel("alignment (share choosing the target), 95 % CI")
    ax.set_title(f"{report['survey']}: human alignment per condition")
    ax.legend(loc="lower right", frameon=False)
    if not rows:
        ax.text(0.5, 0.5, "no included answers yet", ha="center", va="center", transform=ax.transAxes)


def _proxy(ax, report: dict) -> None:
    plotted = False
    for n, metric in enumerate(report["proxy"]["metrics"]):
        pts = [(c["proxy"][metric]["alignment"], c["alignment"]) for c in report["conditions"]
               if metric in c["proxy"] and c["proxy"][metric]["alignment"] is not None and c["alignment"] is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=16, color=f"C{n}", label=metric)
            plotted = True
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("proxy alignment")
    ax.set_ylabel("human alignment")
    ax.set_title("proxy vs humans, one point per condition")
    if plotted:
        ax.legend(frameon=False, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no proxy scores yet", ha="center", va="center", transform=ax.transAxes)


def _fill(ax, report: dict) -> None:
    bins = report["ratings_per_item"]
    ax.bar([b["ratings"] for b in bins], [b["items"] for b in bins], color="C0", width=0.8)
    if report.get("ratings_target"):
        ax.axvline(report["ratings_target"], color="C3", ls="--", lw=0.8, label=f"target N = {report['ratings_target']}")
        ax.legend(frameon=False)
    ax.set_xlabel("included ratings per item")
    ax.set_ylabel("items")
    ax.set_title("ratings per item")


def plot_render(*, report: dict, name: str, fmt: str) -> bytes:
    """One figure of the report as bytes in `fmt` (png, svg, pdf)."""
    if name not in PLOTS or fmt not in FORMATS:
        raise ValueError(f"unknown plot {name}.{fmt}")
    height = max(2.0, 0.28 * len(report["conditions"]) + 1.2) if name == "alignment" else 3.0
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.5 if name != "proxy" else 3.4, height))
        {"alignment": _alignment, "proxy": _proxy, "fill": _fill}[name](ax, report)
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata={"Creator": "iri results"} if fmt != "png" else None)
        plt.close(fig)
    return buffer.getvalue()
