"""The report's figures (matplotlib, Agg), each saved as PNG and SVG."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Matplotlib's font cache goes under the repo's cache/, never into ~/.cache (unless the user chose a place).
os.environ.setdefault("MPLCONFIGDIR", str(Path(__file__).resolve().parent.parent / "cache" / "matplotlib"))
import matplotlib  # noqa: E402

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

from reports import paper_values  # noqa: E402
from reports.model import Report, Row, Table1, Table2  # noqa: E402
from trackers import schema  # noqa: E402

plt.rcParams["svg.hashsalt"] = "avkd"  # stable ids: the same data gives the same SVG
LOSS_COLORS = {"rep": "tab:orange", "rep+ce": "tab:blue"}
REFERENCE_STYLES = {
    "teacher": dict(color="black", ls="--"),
    "blind": dict(color="grey", ls=":"),
    "audio": dict(color="tab:purple", ls="-."),
    "visual": dict(color="tab:green", ls="-."),
}


@dataclass
class Figure:
    title: str
    caption: str
    png: Path
    svg: Path


def _save(fig: plt.Figure, folder: Path, name: str, title: str, caption: str) -> Figure:
    png, svg = folder / f"{name}.png", folder / f"{name}.svg"
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    fig.savefig(svg, metadata={"Date": None})
    plt.close(fig)
    return Figure(title, caption, png, svg)


def _students_by_loss(table: Table1) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for row in table.rows:  # already in the paper's order
        if row.role == "student":
            groups.setdefault(row.loss, []).append(row)
    return groups


def _color(loss: str, i: int) -> str:
    return LOSS_COLORS.get(loss, f"C{(i + 2) % 10}")


def metric_vs_k(table: Table1, folder: Path) -> Figure:
    """SCORE and CIDEr against k, one line per loss; the teacher (and blind baseline) as horizontal lines."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, column, name in ((axes[0], schema.SCORE, "SCORE"), (axes[1], schema.CIDER, "CIDEr")):
        for i, (loss, rows) in enumerate(_students_by_loss(table).items()):
            rows = [r for r in rows if r.mean.get(column) is not None]
            if rows:
                ax.errorbar(
                    [r.k for r in rows],
                    [r.mean[column] for r in rows],
                    yerr=[r.half.get(column) or 0.0 for r in rows],
                    marker="o",
                    capsize=3,
                    color=_color(loss, i),
                    label=f"student, loss {loss}",
                )
        for row in table.rows:
            mean, half = row.mean.get(column), row.half.get(column)
            if row.role not in ("teacher", "blind", "guide") or mean is None:
                continue
            style = REFERENCE_STYLES.get(row.guide or row.role)
            ax.axhline(mean, label=row.label.rstrip(" †‡").lower(), **style)
            if half:
                ax.axhspan(mean - half, mean + half, color=style["color"], alpha=0.08)
        ax.set_xlabel("k (fraction of audio-visual frames kept)")
        ax.set_ylabel(name)
        ax.set_title(f"{name} vs k")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    return _save(
        fig,
        folder,
        "score_cider_vs_k",
        "SCORE and CIDEr vs k",
        "mean over seeds; error bars and shaded bands: 95 % t-interval over seeds (none where a cell has "
        "one seed); dashed: teacher, dotted: blind baseline, dash-dot: audio-only / visual-only teacher.",
    )


def time_vs_k(t2: Table2, paper: bool, folder: Path) -> Figure:
    """Seconds per video against k (teacher at k = 1), and the reduction vs the teacher."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ks = [r.k for r in t2.rows]
    ax.errorbar(
        ks,
        [r.extract_mean for r in t2.rows],
        yerr=[r.extract_std or 0.0 for r in t2.rows],
        marker="o",
        capsize=3,
        label="feature extraction",
    )
    e2e = [r for r in t2.rows if r.e2e_mean is not None]
    if e2e:
        ax.errorbar(
            [r.k for r in e2e],
            [r.e2e_mean for r in e2e],
            yerr=[r.e2e_std or 0.0 for r in e2e],
            marker="s",
            capsize=3,
            label="end to end",
        )
    ax.set_xlabel("k (k = 1: teacher)")
    ax.set_ylabel("seconds per video")
    ax.set_title("Time per video vs k")
    students = [r for r in t2.rows if r.k < 1.0 and r.extract_reduction is not None]
    ax2.plot([r.k for r in students], [r.extract_reduction for r in students], "o-", label="extraction (this sweep)")
    ax2.plot([0, 1], [100, 0], ":", color="grey", label="proportional to k")
    if paper:
        pk = sorted(k for k in paper_values.TABLE2 if k < 1.0)
        ax2.plot(
            pk, [paper_values.TABLE2[k][1] for k in pk], "D--", mfc="none", color="tab:red", label="paper (MSR-VTT)"
        )
    ax2.set_xlabel("k")
    ax2.set_ylabel("reduction vs teacher (%)")
    ax2.set_title("Extraction time saved")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    return _save(
        fig,
        folder,
        "time_vs_k",
        "Extraction time vs k",
        "mean ± standard deviation over the timed videos; right: reduction vs the teacher.",
    )


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both time (lower) and score (higher), by increasing time."""
    front, best = [], float("-inf")
    for time_s, score in sorted(points, key=lambda p: (p[0], -p[1])):
        if score > best:
            front.append((time_s, score))
            best = score
    return front


def score_vs_time(table: Table1, t2: Table2, folder: Path) -> Figure | None:
    """SCORE against extraction time per video, with the Pareto front."""
    times = {round(r.k, 6): r for r in t2.rows}
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points = []
    losses = list(_students_by_loss(table))
    for row in (r for r in table.rows if r.role in ("student", "teacher")):
        timing = times.get(round(row.k, 6))
        if timing is None or row.mean.get(schema.SCORE) is None:
            continue
        x, y = timing.extract_mean, row.mean[schema.SCORE]
        points.append((x, y))
        color = "black" if row.role == "teacher" else _color(row.loss, losses.index(row.loss))
        ax.errorbar(
            x,
            y,
            xerr=timing.extract_std or 0.0,
            yerr=row.half.get(schema.SCORE) or 0.0,
            fmt="o",
            color=color,
            capsize=3,
        )
        ax.annotate(
            "teacher" if row.role == "teacher" else f"{row.loss} k={row.k:g}",
            (x, y),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    if not points:
        plt.close(fig)
        return None
    front = pareto_front(points)
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:green", alpha=0.7)
    ax.plot(
        [p[0] for p in front],
        [p[1] for p in front],
        "o",
        ms=13,
        mfc="none",
        mec="tab:green",
        label="Pareto front (no point is both faster and better)",
    )
    ax.set_xlabel("feature extraction time per video (s)")
    ax.set_ylabel("SCORE")
    ax.set_title("SCORE vs time per video")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(
        fig,
        folder,
        "score_vs_time",
        "SCORE vs time per video",
        "each point a (loss, k) cell (mean over seeds); vertical bars: SCORE's 95 % t-interval over seeds, "
        "horizontal bars: one standard deviation of time over the timed videos; green: the Pareto front "
        "(faster and better).",
    )


def score_vs_decode_time(table: Table1, folder: Path) -> Figure | None:
    """Early exit: SCORE against decoding time per video, one point per threshold, per (loss, k) cell."""
    rows = [
        r
        for r in table.rows
        if r.role in ("teacher", "student")
        and r.early_exit
        and r.decode_s is not None
        and r.mean.get(schema.SCORE) is not None
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.8))
    losses = list(_students_by_loss(table))
    for row in rows:
        color = "black" if row.role == "teacher" else _color(row.loss, losses.index(row.loss))
        xs = [row.decode_s] + [p[1] for p in row.early_exit]
        ys = [row.mean[schema.SCORE]] + [p[2] for p in row.early_exit]
        name = "teacher" if row.role == "teacher" else f"{row.loss} k={row.k:g}"
        ax.plot(xs, ys, "-", color=color, alpha=0.5, marker="o", ms=4, label=name)
        ax.plot(xs[:1], ys[:1], "s", color=color, ms=7)
        for threshold, x, y in row.early_exit:
            ax.annotate(f"{threshold:g}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlabel("decoding time per test video (s)")
    ax.set_ylabel("SCORE")
    ax.set_title("Early exit: SCORE vs decoding time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(
        fig,
        folder,
        "score_vs_decode_time",
        "Early exit: SCORE vs decoding time",
        "squares: the full decoder; circles: early exit, labelled with the confidence threshold (mean over seeds).",
    )


def write_figures(report: Report, folder: Path) -> list[Figure]:
    for old in ("score_cider_vs_k", "time_vs_k", "score_vs_time", "score_vs_decode_time"):  # never show a stale figure
        for ext in ("png", "svg"):
            (folder / f"{old}.{ext}").unlink(missing_ok=True)
    figures = [metric_vs_k(report.table1, folder)]
    if report.table2 is not None and report.table2.rows:
        figures.append(time_vs_k(report.table2, report.paper, folder))
        tradeoff = score_vs_time(report.table1, report.table2, folder)
        if tradeoff is not None:
            figures.append(tradeoff)
    early_exit = score_vs_decode_time(report.table1, folder)
    if early_exit is not None:
        figures.append(early_exit)
    return figures
