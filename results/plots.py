"""Paper-friendly figures of a report (matplotlib, Agg): PNG, SVG or PDF bytes. Reads only the report dict."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLOTS = ("alignment", "proxy", "fill", "recognition")
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
    if name == "recognition":  # accuracy by layer; a survey of another task type has no rows: an empty figure
        rows = (report.get("recognition") or {}).get("conditions", [])
        return recognition_by_layer_plot(rows, fmt=fmt, title=report.get("title"))
    height = max(2.0, 0.28 * len(report["conditions"]) + 1.2) if name == "alignment" else 3.0
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.5 if name != "proxy" else 3.4, height))
        {"alignment": _alignment, "proxy": _proxy, "fill": _fill}[name](ax, report)
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata={"Creator": "iri results"} if fmt != "png" else None)
        plt.close(fig)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Recognition (timed classification): accuracy by layer, people vs network, as in Feather et al. 2023's figures

RECOGNITION_GROUP_FIELDS = ("backbone", "checkpoint", "recipe")


def _value(v) -> float:
    return float("nan") if v is None else float(v)


def _bar(high, low) -> float:
    """The length of an error bar from low to high (0 where either end is missing)."""
    if high is None or low is None or high != high or low != low:
        return 0.0
    return max(0.0, float(high) - float(low))


def recognition_by_layer_figure(rows: list[dict], *, layer_order: list[str] | None = None, title: str | None = None):
    """The matplotlib Figure behind recognition_by_layer_plot (the caller closes it: plt.close(fig)).

    rows: stats.recognition rows carrying ``backbone``, ``checkpoint``, ``recipe`` and ``layer`` (missing ones
    count as ""; a row without ``layer`` is placed by its ``condition``). One panel per backbone (each has its own
    stages on the x axis); in it, per (checkpoint, recipe) group, one solid line for people (accuracy with its CI
    as error bars, label "<group>: people") and one dotted line for the network (label "<group>: network"), in
    the same colour; chance as a dashed grey line. Layers go in ``layer_order`` (those listed, in that order),
    then in the order they first appear in rows. Missing values leave gaps.
    """
    backbones: dict[str, list[dict]] = {}
    for row in rows:
        backbones.setdefault(str(row.get("backbone") or ""), []).append(row)
    order = {name: k for k, name in enumerate(layer_order or [])}
    with plt.rc_context(STYLE):
        n_panels = max(1, len(backbones))
        fig, axes = plt.subplots(1, n_panels, figsize=(3.4 * n_panels, 2.8), sharey=True, squeeze=False)
        if not backbones:
            axes[0][0].text(0.5, 0.5, "no conditions yet", ha="center", va="center", transform=axes[0][0].transAxes)
        colour = 0
        for ax, (backbone, mine) in zip(axes[0], backbones.items()):
            layers: list[str] = []
            for row in mine:
                layer = str(row.get("layer", row.get("condition", "")))
                if layer not in layers:
                    layers.append(layer)
            first = {name: k for k, name in enumerate(layers)}
            layers.sort(key=lambda name: (order.get(name, len(order)), first[name]))
            x_of = {name: k for k, name in enumerate(layers)}
            groups: dict[tuple, list[dict]] = {}
            for row in mine:
                groups.setdefault(tuple(str(row.get(f) or "") for f in RECOGNITION_GROUP_FIELDS[1:]), []).append(row)
            for key, group in groups.items():
                group = sorted(group, key=lambda r: x_of[str(r.get("layer", r.get("condition", "")))])
                xs = [x_of[str(r.get("layer", r.get("condition", "")))] for r in group]
                acc = [_value(r.get("accuracy")) for r in group]
                below = [_bar(a, r.get("ci_low")) for a, r in zip(acc, group)]
                above = [_bar(r.get("ci_high"), a) for a, r in zip(acc, group)]
                name = " · ".join(part for part in (backbone, *key) if part) or "condition"
                ax.errorbar(xs, acc, yerr=[below, above], color=f"C{colour}", marker="o", ms=3.5, lw=1.2, capsize=2,
                            label=f"{name}: people")
                ax.plot(xs, [_value(r.get("network_accuracy")) for r in group], color=f"C{colour}", marker="s",
                        mfc="white", ms=3.5, lw=1.0, ls=":", label=f"{name}: network")
                colour += 1
            chances = sorted({round(r["chance"], 6) for r in mine if r.get("chance") is not None})
            for k, chance in enumerate(chances):
                ax.axhline(chance, color="0.5", ls="--", lw=0.8, label="chance" if k == 0 else None)
            ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
            ax.set_xlim(-0.5, max(len(layers) - 0.5, 0.5))
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("layer")
            ax.set_title(backbone or "recognition")
            ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.32))  # below the panel, off the data
        axes[0][0].set_ylabel("recognition accuracy (95 % CI)")
        if title:
            fig.suptitle(title)
    return fig


def recognition_by_layer_plot(rows: list[dict], *, fmt: str = "png", layer_order: list[str] | None = None,
                              title: str | None = None) -> bytes:
    """Accuracy by layer, people (with CI bars) vs network, chance dashed: bytes in `fmt` (png, svg, pdf)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown plot format {fmt}")
    fig = recognition_by_layer_figure(rows, layer_order=layer_order, title=title)
    with plt.rc_context(STYLE):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata={"Creator": "iri results"} if fmt != "png" else None)
    plt.close(fig)
    return buffer.getvalue()
