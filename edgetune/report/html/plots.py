"""The report's figures, drawn with matplotlib and returned as PNG bytes.

`matplotlib.figure.Figure` directly, never pyplot: no global state, no GUI backend, safe
in a library that may run inside someone else's process.
"""

from __future__ import annotations

import base64
import io

import numpy as np

BLUE, ORANGE, GREEN, RED, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f"
_STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
          "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}


def _figure(w: float, h: float):
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.rcParams.update(_STYLE)
    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


def b64(fig) -> str:
    return base64.b64encode(png(fig)).decode("ascii")


def training_curves(history: list[dict]):
    """Loss and top-1 per epoch; unfreezing stages shaded when the history records them."""
    fig = _figure(9.0, 3.3)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    for key, label, color in (("train_loss", "train loss", BLUE), ("val_loss", "val loss", ORANGE)):
        if any(key in r for r in history):
            loss_ax.plot(epochs, [r.get(key, np.nan) for r in history], "o-", ms=3, color=color, label=label)
    for key, label, color in (("top1", "val top-1", BLUE), ("top5", "val top-5", GREY)):
        if any(key in r for r in history):
            acc_ax.plot(epochs, [100 * r.get(key, np.nan) for r in history], "o-", ms=3, color=color,
                        label=label, alpha=1.0 if key == "top1" else 0.6)
    tops = [r.get("top1", -1) for r in history]
    best = int(np.argmax(tops))
    if tops[best] >= 0:
        acc_ax.plot(epochs[best], 100 * tops[best], "*", ms=13, color=GREEN, zorder=5,
                    label=f"best {100 * tops[best]:.1f}% (epoch {epochs[best]})")
    losses = [r.get(k) for r in history for k in ("train_loss", "val_loss") if r.get(k)]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 20:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        loss_ax.set_yscale("log")  # a first epoch from scratch would flatten the rest
        loss_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        loss_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        loss_ax.yaxis.set_minor_formatter(NullFormatter())
    loss_ax.set(title="loss", xlabel="epoch")
    acc_ax.set(title="validation accuracy", xlabel="epoch", ylabel="%")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        if _shade_stages(ax, history):
            ax.set_title(ax.get_title(), pad=14)  # room for the stage names above the plot
        ax.legend(loc="best", fontsize=8, frameon=False)
    return fig


def _shade_stages(ax, history: list[dict]) -> bool:
    """Alternate grey bands per unfreezing stage (the `stage` field of each epoch), labelled."""
    runs: list[list] = []  # [label, first epoch, last epoch]
    for r in history:
        if "stage" not in r:
            continue
        label = stage_label(r)
        if runs and runs[-1][0] == label:
            runs[-1][2] = r["epoch"]
        else:
            runs.append([label, r["epoch"], r["epoch"]])
    if len(runs) < 2:  # one stage: nothing to mark
        return False
    for i, (stage, first, last) in enumerate(runs):  # noqa: B007 - stage is the label
        if i % 2 == 0:
            ax.axvspan(first - 0.5, last + 0.5, color="#000000", alpha=0.06, lw=0)
        if i > 0:
            ax.axvline(first - 0.5, color=GREY, lw=0.8, ls="--")
        ax.text((first + last) / 2, 1.0, stage, transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=7, color="#444444")
    return True


def stage_label(record: dict) -> str:
    """What an epoch trained: "head", "top 2", "all" (from the history's `unfreeze`), else its stage."""
    u = record.get("unfreeze")
    if u is None:
        stage = record.get("stage", "")
        return f"stage {stage}" if isinstance(stage, (int, float)) else str(stage)
    return f"top {u}" if str(u).isdigit() else str(u)


def confusion_matrix(confusion: list[list[int]], classes: list[str]):
    cm = np.asarray(confusion, dtype=float)
    n = len(classes)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = min(max(3.2, 0.3 * n + 1.3), 9.0)
    fig = _figure(side + 0.8, side)
    ax = fig.subplots()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (share of each true class)")
    ticks = np.arange(n) if n <= 40 else np.arange(0, n, max(1, n // 20))
    ax.set_xticks(ticks, [_short(classes[i]) for i in ticks], rotation=90 if n > 10 else 0)
    ax.set_yticks(ticks, [_short(classes[i]) for i in ticks])
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "#222222")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def per_class_accuracy(confusion: list[list[int]], classes: list[str], shown: int = 30):
    cm = np.asarray(confusion, dtype=float)
    counts = cm.sum(1)
    acc = np.diag(cm) / np.maximum(counts, 1)
    overall = np.trace(cm) / max(cm.sum(), 1)
    order = np.argsort(acc, kind="stable")[:shown]  # worst first
    n = len(order)
    fig = _figure(4.2, min(max(2.4, 0.26 * n + 1.0), 9.0))
    ax = fig.subplots()
    y = np.arange(n)[::-1]  # worst class on top
    colors = [ORANGE if acc[i] < overall else BLUE for i in order]
    ax.barh(y, 100 * acc[order], color=colors, height=0.7)
    ax.axvline(100 * overall, color=GREY, ls="--", lw=1)
    ax.text(100 * overall, 1.0, f"overall {100 * overall:.1f}%", transform=ax.get_xaxis_transform(),
            ha="right", va="bottom", fontsize=7, color=GREY)
    ax.set_yticks(y, [_short(classes[i]) for i in order])
    for yi, i in zip(y, order):
        inside = acc[i] > 0.3
        ax.text(100 * acc[i] + (-1 if inside else 1), yi, f"{100 * acc[i]:.0f}%  n={int(counts[i])}",
                va="center", ha="right" if inside else "left", fontsize=7,
                color="white" if inside else "#222222")
    title = "per-class accuracy" + (f" ({shown} worst of {len(classes)})" if len(classes) > shown else "")
    ax.set(xlim=(0, 100), xlabel="top-1 %", title=title)
    ax.grid(axis="y", visible=False)
    return fig


def worst_images(worst: list[dict], classes: list[str], per_row: int = 6):
    """The worst-classified validation images with their true and predicted classes."""
    from PIL import Image

    items = [w for w in worst if w.get("thumb")]
    if not items:
        return None
    rows = (len(items) + per_row - 1) // per_row
    fig = _figure(1.45 * per_row, 1.75 * rows)
    axes = np.atleast_1d(fig.subplots(rows, per_row)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, w in zip(axes, items):
        image = Image.open(io.BytesIO(base64.b64decode(w["thumb"])))
        small = max(image.size) < 48  # tiny images (digits) read better as crisp pixels
        ax.imshow(np.asarray(image), cmap="gray", interpolation="nearest" if small else "antialiased")
        wrong = w["pred"] != w["label"]
        ax.set_title(f"true {_short(classes[w['label']], 10)}\npred {_short(classes[w['pred']], 10)} "
                     f"{100 * w['p_pred']:.0f}%", fontsize=8, color=RED if wrong else "#222222")
    return fig


def accuracy_latency(points: list[dict], floor: float | None, measure: str = "val top-1",
                     floor_name: str = "accuracy floor", title: str = "accuracy against latency"):
    """`measure` (each point's top1) against p50 latency; `points`: label, top1, p50, group, recommended."""
    fig = _figure(7.6, 3.9)
    ax = fig.subplots()
    groups = list(dict.fromkeys(p["group"] for p in points))
    palette = [BLUE, ORANGE, GREEN, "#9467bd", "#8c564b", "#e377c2"]
    for g, color in zip(groups, palette * 3):
        ps = [p for p in points if p["group"] == g]
        ax.scatter([p["p50"] for p in ps], [100 * p["top1"] for p in ps], s=40, color=color,
                   label=g, zorder=3)
    for p in points:
        if p.get("recommended"):
            ax.scatter([p["p50"]], [100 * p["top1"]], s=300, marker="*", color=GREEN,
                       edgecolor="black", lw=0.6, zorder=2, label="recommended")  # under its dot
    if floor is not None:
        ax.axhline(100 * floor, color=RED, ls="--", lw=1, label=f"{floor_name} ({100 * floor:.1f}%)")
    lat = [p["p50"] for p in points]
    if lat and max(lat) / max(min(lat), 1e-9) > 20:
        ax.set_xscale("log")
    lo, hi = min(lat), max(lat)
    if ax.get_xscale() == "linear":
        span = hi - lo + 0.05 * hi
        ax.set_xlim(max(0.0, lo - 0.15 * span), hi + 0.35 * span)
    tops = [100 * p["top1"] for p in points] + ([100 * floor] if floor is not None else [])
    pad = max(0.5, 0.15 * (max(tops) - min(tops)))
    ax.set_ylim(min(tops) - pad, min(100.5, max(tops) + pad))
    ax.set(xlabel="p50 latency, batch 1 (ms): lower is better", ylabel=f"{measure} (%)",
           title=title)
    _label_points(ax, points)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    return fig


def _label_points(ax, points: list[dict]) -> None:
    """Name each point, moving a label below or to the left when it would cover another."""
    placed: list[tuple] = []  # label boxes in axes fractions
    to_axes = ax.transLimits.transform if ax.get_xscale() == "linear" else None
    for p in sorted(points, key=lambda p: p["p50"]):
        if to_axes is None:
            fx, fy = ax.transAxes.inverted().transform(ax.transData.transform((p["p50"], 100 * p["top1"])))
        else:
            fx, fy = to_axes((p["p50"], 100 * p["top1"]))
        w, h = 0.0105 * len(p["label"]), 0.05
        # The first free corner wins; its offsets and alignment are used after the loop.
        for dx, dy, ha, va in ((8, 6, "left", "bottom"), (8, -8, "left", "top"),  # noqa: B007
                               (-8, 6, "right", "bottom"), (-8, -8, "right", "top")):
            x0 = fx + (0.012 if dx > 0 else -0.012 - w)
            y0 = fy + (0.015 if dy > 0 else -0.015 - h)
            box = (x0, y0, x0 + w, y0 + h)
            if not any(_overlap(box, b) for b in placed):
                break
        placed.append(box)
        ax.annotate(p["label"], (p["p50"], 100 * p["top1"]), xytext=(dx, dy), textcoords="offset points",
                    ha=ha, va=va, fontsize=8)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def domain_accuracy(rows: list[dict], domains: list[str]):
    """Grouped bars: per artifact, top-1 on each domain (source val and the target ones)."""
    fig = _figure(7.6, 3.2)
    ax = fig.subplots()
    width = 0.8 / max(len(domains), 1)
    x = np.arange(len(rows))
    palette = [BLUE, ORANGE, GREEN, "#9467bd"]
    for k, (d, color) in enumerate(zip(domains, palette * 3)):
        vals = [100 * r[d] if r.get(d) is not None else np.nan for r in rows]
        bars = ax.bar(x + (k - (len(domains) - 1) / 2) * width, vals, width, color=color, label=d)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(x, [r["label"] for r in rows], fontsize=8)
    ax.set(ylabel="top-1 (%)", title="accuracy on source and target domains", ylim=(0, 105))
    ax.legend(loc="lower right", fontsize=8)
    return fig


def trial_history(values: list[float | None], direction: str = "maximize"):
    fig = _figure(4.6, 3.0)
    ax = fig.subplots()
    ax.xaxis.get_major_locator().set_params(integer=True)
    xs = [i for i, v in enumerate(values) if v is not None]
    ys = [values[i] for i in xs]
    ax.scatter(xs, ys, s=18, color=BLUE, label="trial", zorder=3)
    best = np.maximum.accumulate(ys) if direction == "maximize" else np.minimum.accumulate(ys)
    ax.step(xs, best, where="post", color=RED, label="best so far")
    ax.set(xlabel="trial", ylabel="objective", title="optimisation history")
    ax.legend(fontsize=8, frameon=False)
    return fig


def pareto(points: list[tuple[float, float]], front: list[tuple[float, float]], budget: float | None):
    """Top-1 against p50 latency, one dot per trial, the Pareto front joined (fastest first),
    the latency budget a vertical line: what `tune --objectives top1,latency` traded."""
    fig = _figure(4.6, 3.2)
    ax = fig.subplots()
    ax.scatter([x for x, _ in points], [y for _, y in points], s=18, color=GREY, label="trial", zorder=2)
    front = sorted(front)
    ax.plot([x for x, _ in front], [y for _, y in front], "o-", color=BLUE, ms=5, label="Pareto front", zorder=3)
    if budget is not None:
        ax.axvline(budget, color=RED, ls="--", lw=1.2, label=f"budget {budget:g} ms")
    ax.set(xlabel="p50 latency (ms, batch 1)", ylabel="val top-1", title="accuracy against latency")
    ax.legend(fontsize=8, frameon=False)
    return fig


def importances(values: dict[str, float]):
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig = _figure(4.2, max(1.8, 0.35 * len(items) + 0.9))
    ax = fig.subplots()
    ax.barh([k for k, _ in items], [v for _, v in items], color=BLUE)
    ax.set(xlabel="importance", title="parameter importances")
    ax.grid(axis="y", visible=False)
    return fig


def param_slices(rows: list[dict], params: list[str], values: list[float | None]):
    """Objective against each searched parameter (one panel each): what the search learned."""
    n = len(params)
    cols = min(n, 3)
    fig = _figure(3.1 * cols, 2.6 * ((n + cols - 1) // cols))
    axes = np.atleast_1d(fig.subplots((n + cols - 1) // cols, cols)).ravel()
    for ax in axes[n:]:
        ax.axis("off")
    for ax, p in zip(axes, params):
        pairs = [(r.get(p), v) for r, v in zip(rows, values) if v is not None and r.get(p) not in (None, "")]
        nums = [_float(x) for x, _ in pairs]
        if pairs and all(x is not None for x in nums):
            ax.scatter(nums, [v for _, v in pairs], s=14, color=BLUE)
            if min(nums) > 0 and max(nums) / min(nums) > 8:
                from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                ax.set_xscale("log")  # learning rates and the like
                ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                ax.xaxis.get_major_locator().set_params(nbins=4)
        else:
            labels = sorted({str(x) for x, _ in pairs})
            ax.scatter([labels.index(str(x)) for x, _ in pairs], [v for _, v in pairs], s=14, color=BLUE)
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(p.removeprefix("params_"), fontsize=9)
    return fig


def _float(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _short(name: str, n: int = 14) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"
