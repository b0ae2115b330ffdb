"""Table I / Table II as Markdown, CSV, LaTeX (booktabs), HTML and rich terminal tables, and index.html."""

from __future__ import annotations

import base64
import csv
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from reports import paper_values
from reports.model import COLUMNS, Report, Row, Table1, Table2
from trackers import schema

if TYPE_CHECKING:
    from reports.figures import Figure

HEADER1 = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr", "METEOR", "ROUGE-L", "SPICE", "SCORE", "Diff (%)", "n"]
HEADER2 = ["Network", "Extraction (s/video)", "Reduction (%)", "End-to-end (s/video)", "E2E reduction (%)"]
HEADER2_PAPER = ["Paper: time (s)", "Paper: Diff (%)"]
PAPER_NOTE = (
    "Published values of Çaylı et al. (MSR-VTT test set, pretrained backbones, full-size model), "
    "transcribed from the paper; its 'Diff (%)' column is printed as published: a fraction "
    "(0.127 means 12.7 %)."
)

PAPER_LOSSES = {"rep": "L_rep", "rep+ce": "L_rep + L_CE"}

# A cell is (mean text, std text or None, bold); each format joins them its own way.
Cell = tuple[str, "str | None", bool]


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


NOT_DISTINGUISHABLE = "≈"  # Diff's interval contains 0: not distinguishable from the teacher
ATTR_LABELS = {
    "visual_static": "Attr: visual static",
    "audio": "Attr: audio",
    "visual_event": "Attr: visual event",
    "audio_event": "Attr: audio event",
}


def table1_header(table: Table1) -> list[str]:
    """Table I's value columns: metrics, SCORE, Diff and its interval, n, then attribute accuracy (when stored)."""
    return [
        *HEADER1[:-1],
        "Diff 95 % CI",
        HEADER1[-1],
        *(ATTR_LABELS.get(g, f"Attr: {g}") for g in table.attribute_groups),
    ]


def _diff_ci(row: Row) -> str:
    if row.diff_ci is None:
        return "-"
    low, high = row.diff_ci
    return f"[{low:.1f}, {high:.1f}]" + ("" if row.distinguishable else f" {NOT_DISTINGUISHABLE}")


def table1_cells(table: Table1) -> list[tuple[Row, list[Cell]]]:
    """Per row: mean ± 95 % half-width per metric (the mean alone when n < 2), Diff, its interval, n, attributes."""
    out = []
    for row in table.rows:
        cells: list[Cell] = []
        for column in COLUMNS:
            mean, half = row.mean.get(column), row.half.get(column)
            bold = mean is not None and round(mean, 3) == table.best.get(column)
            cells.append((_num(mean), None if (mean is None or half is None) else _num(half), bold))
        cells.append((_num(row.diff_pct, 2), None, False))
        cells.append((_diff_ci(row), None, False))
        cells.append((str(row.n), None, False))
        for group in table.attribute_groups:
            mean, half = row.attributes.get(group, (None, None))
            cells.append((_num(mean), None if (mean is None or half is None) else _num(half), False))
        out.append((row, cells))
    return out


def paper_table1_rows() -> list[tuple[str, str, float, list[str]]]:
    """(label, loss, k, cells) of the paper's Table I, in its order."""
    rows = []
    for (loss, k), values in paper_values.TABLE1.items():
        label = "Teacher" if loss == "ce" else f"{PAPER_LOSSES[loss]} student (k = {k:g})"
        rows.append((label, loss, k, [f"{v:.3f}" for v in values]))
    return rows


def _has_decoding(table: Table2) -> bool:
    return any(r.decode_mean is not None for r in table.rows)


def table2_header(table: Table2, paper: bool) -> list[str]:
    """Table II's value columns: extraction, [decoding, early exit per threshold], [the paper's]."""
    header = HEADER2[1:] + (["Caption decoding (s/video)"] if _has_decoding(table) else [])
    for t in table.thresholds:
        header += [f"EE {t:g}: decoding (s/video)", f"EE {t:g}: SCORE drop (%)"]
    return header + (HEADER2_PAPER if paper else [])


def table2_cells(table: Table2, paper: bool) -> list[tuple[str, list[Cell]]]:
    out = []
    for r in table.rows:
        cells: list[Cell] = [
            (_num(r.extract_mean), None if r.extract_std is None else _num(r.extract_std), False),
            (_num(r.extract_reduction, 1), None, False),
            (_num(r.e2e_mean), None if (r.e2e_mean is None or r.e2e_std is None) else _num(r.e2e_std), False),
            (_num(r.e2e_reduction, 1), None, False),
        ]
        if _has_decoding(table):
            cells.append((_num(r.decode_mean, 4), None, False))
        for t in table.thresholds:
            decode_s, drop = r.early_exit.get(t, (None, None))
            cells += [(_num(decode_s, 4), None, False), (_num(drop, 1), None, False)]
        if paper:
            published = paper_values.TABLE2.get(round(r.k, 6))
            cells += (
                [(f"{published[0]:.2f}", None, False), (f"{published[1]:.1f}", None, False)]
                if published
                else [("-", None, False), ("-", None, False)]
            )
        out.append((r.label, cells))
    return out


# ---- Markdown ---------------------------------------------------------------------------------------------


def _md_cell(cell: Cell) -> str:
    mean, std, bold = cell
    text = mean if std is None else f"{mean} ± {std}"
    return f"**{text}**" if bold else text


def _md_table(header: list[str], rows: list[tuple[str, list[str]]]) -> str:
    lines = ["| | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def table1_md(report: Report) -> str:
    rows = [(row.label, [_md_cell(c) for c in cells]) for row, cells in table1_cells(report.table1)]
    parts = [
        f"# Table I: captioning metrics on the test split (sweep `{report.sweep_name}`)",
        "",
        _md_table(table1_header(report.table1), rows),
        "",
    ]
    parts += [f"{i}. {note}" for i, note in enumerate(report.table1.notes, 1)]
    if report.paper:
        parts += ["", paper_comparison_md(report)]
    return "\n".join(parts) + "\n"


def table2_md(report: Report) -> str:
    t2 = report.table2
    header = table2_header(t2, report.paper)
    rows = [(label, [_md_cell(c) for c in cells]) for label, cells in table2_cells(t2, report.paper)]
    parts = [f"# Table II: {t2.caption} (timing run {t2.run_id})", "", _md_table(header, rows), ""]
    parts += [f"{i}. {note}" for i, note in enumerate(t2.notes, 1)]
    if report.paper:
        parts.append(
            f"{len(t2.notes) + 1}. Paper columns: the published Table II "
            f"({paper_values.TABLE2_VIDEOS} MSR-VTT test videos; feature extraction time)."
        )
    return "\n".join(parts) + "\n"


# ---- CSV --------------------------------------------------------------------------------------------------


def _csv_num(value: float | None) -> str:
    return "" if value is None else repr(round(float(value), 10))


def write_table1_csv(report: Report, path: Path) -> None:
    groups = report.table1.attribute_groups
    header = ["row", "role", "loss", "k", "n", "seeds", "tuned"]
    for column in COLUMNS:
        header += [f"{column}_mean", f"{column}_std", f"{column}_ci95"]
    header += ["diff_pct", "diff_ci95_low", "diff_ci95_high", "distinguishable"]
    for g in groups:
        header += [f"attr_{g}_mean", f"attr_{g}_ci95"]
    header += ["score_terms", "run_ids", "missing"]
    if report.paper:
        header += [f"paper_{c}" for c in paper_values.TABLE1_COLUMNS[:-1]] + ["paper_diff_published"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in report.table1.rows:
            line = [
                row.label,
                row.role,
                row.loss,
                f"{row.k:g}",
                row.n,
                " ".join(t.seed for t in row.trials),
                str(row.tuned).lower(),
            ]
            for column in COLUMNS:
                line += [_csv_num(row.mean.get(column)), _csv_num(row.std.get(column)), _csv_num(row.half.get(column))]
            low, high = row.diff_ci or (None, None)
            line += [
                _csv_num(row.diff_pct),
                _csv_num(low),
                _csv_num(high),
                "" if row.distinguishable is None else str(row.distinguishable).lower(),
            ]
            for g in groups:
                line += [_csv_num(v) for v in row.attributes.get(g, (None, None))]
            line += [
                ",".join(report.table1.terms),
                " ".join(t.run_id for t in row.trials),
                " ".join(f"seed {t.seed} {t.status} {t.run_id}" for t in row.missing),
            ]
            if report.paper:
                published = paper_values.TABLE1.get(
                    ("ce", 1.0) if row.role == "teacher" else (row.loss, round(row.k, 6))
                )
                line += (
                    [repr(v) for v in published]
                    if published and row.role != "blind"
                    else [""] * len(paper_values.TABLE1_COLUMNS)
                )
            writer.writerow(line)


def write_table2_csv(report: Report, path: Path) -> None:
    t2 = report.table2
    header = [
        "row",
        "k",
        "extract_mean_s",
        "extract_std_s",
        "extract_reduction_pct",
        "e2e_mean_s",
        "e2e_std_s",
        "e2e_reduction_pct",
    ] + (["decode_mean_s"] if _has_decoding(t2) else [])
    for t in t2.thresholds:
        header += [f"ee{t:g}_decode_s", f"ee{t:g}_score_drop_pct"]
    header += ["paper_time_s", "paper_diff_pct"] if report.paper else []
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in t2.rows:
            line = [
                r.label,
                f"{r.k:g}",
                _csv_num(r.extract_mean),
                _csv_num(r.extract_std),
                _csv_num(r.extract_reduction),
                _csv_num(r.e2e_mean),
                _csv_num(r.e2e_std),
                _csv_num(r.e2e_reduction),
            ]
            line += [_csv_num(r.decode_mean)] if _has_decoding(t2) else []
            for t in t2.thresholds:
                line += [_csv_num(v) for v in r.early_exit.get(t, (None, None))]
            if report.paper:
                published = paper_values.TABLE2.get(round(r.k, 6))
                line += [repr(published[0]), repr(published[1])] if published else ["", ""]
            writer.writerow(line)


# ---- LaTeX (booktabs) -------------------------------------------------------------------------------------

_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "−": r"$-$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "≈": r"$\approx$",
    "→": r"$\to$",
    "<": r"$<$",
    ">": r"$>$",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _tex_cell(cell: Cell) -> str:
    mean, std, bold = cell
    mean = rf"\textbf{{{mean}}}" if bold else mean
    return mean if std is None else rf"{mean} $\pm$ {std}"


def _tex_label(role: str, loss: str, k: float, row: Row | None = None) -> str:
    if row is not None and (row.role == "guide" or row.tuned):
        return tex_escape(row.label)
    if role == "teacher":
        return "Teacher"
    if role == "blind":
        return r"Blind baseline$^\dagger$"
    name = {"rep": r"$\mathcal{L}_{rep}$", "rep+ce": r"$\mathcal{L}_{rep} + \mathcal{L}_{CE}$"}.get(
        loss, tex_escape(loss)
    )
    return rf"{name} Student ($k = {k:g}$)"


def _tex_table(
    caption: str, label: str, header: list[str], rows: list[tuple[str, list[str], bool]], notes: list[str]
) -> str:
    """rows: (label, cells, rule_before)."""
    lines = [
        r"% Generated by reports/build.py from MLflow. Needs \usepackage{booktabs}.",
        r"\begin{table*}[t]",
        r"\centering",
        rf"\caption{{{tex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{l" + "c" * len(header) + "}",
        r"\toprule",
        " & " + " & ".join(tex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for name, cells, rule in rows:
        if rule:
            lines.append(r"\midrule")
        lines.append(f"{name} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if notes:
        lines += [r"\par\smallskip\footnotesize", r"\begin{enumerate}"]
        lines += [rf"\item {tex_escape(n)}" for n in notes]
        lines.append(r"\end{enumerate}")
    lines.append(r"\end{table*}")
    return "\n".join(lines) + "\n"


def table1_tex(report: Report) -> str:
    rows, previous = [], None
    for row, cells in table1_cells(report.table1):
        group = "student" if row.role == "student" else row.role
        rows.append(
            (
                _tex_label(row.role, row.loss, row.k, row),
                [_tex_cell(c) for c in cells],
                previous is not None and group != previous,
            )
        )
        previous = group
    text = _tex_table(
        f"Captioning metrics on the test split (sweep {report.sweep_name}).",
        "tab:avkd-table1",
        table1_header(report.table1),
        rows,
        report.table1.notes,
    )
    if report.paper:
        paper_rows = [
            (_tex_label("teacher" if loss == "ce" else "student", loss, k), cells, loss == "ce")
            for _, loss, k, cells in paper_table1_rows()
        ]
        text += "\n" + _tex_table(
            "Table I as published (MSR-VTT test set).",
            "tab:avkd-table1-paper",
            HEADER1[:-2] + ["Diff (as published)"],
            paper_rows,
            [PAPER_NOTE],
        )
    return text


def table2_tex(report: Report) -> str:
    t2 = report.table2
    header = table2_header(t2, report.paper)
    rows = [
        (tex_escape(label), [_tex_cell(c) for c in cells], label == "Teacher")
        for label, cells in table2_cells(t2, report.paper)
    ]
    return _tex_table(t2.caption + ".", "tab:avkd-table2", header, rows, t2.notes)


# ---- the paper side by side ------------------------------------------------------------------------------

PAPER_DIFF = "diff"  # paper_values.TABLE1_COLUMNS' last column: Diff, as a fraction in the paper
PAPER_HEADER = [*HEADER1[:-2], "Diff (%)"]  # the compared columns: the metrics, SCORE, Diff as a percentage


def _ours_for(report: Report, loss: str, k: float) -> Row | None:
    role = "teacher" if loss == "ce" else "student"
    return next(
        (
            r
            for r in report.table1.rows
            if r.role == role and (role == "teacher" or r.loss == loss) and round(r.k, 6) == round(k, 6)
        ),
        None,
    )


def paper_comparison(report: Report) -> list[tuple[str, list[tuple[str, str, str, float | None]]]]:
    """The paper's Table I rows, each next to ours: (label, [(ours, paper, delta, delta value) per column of
    PAPER_HEADER]). Delta = ours - paper; Diff is compared as a percentage (the paper prints a fraction)."""
    out = []
    for label, loss, k, _ in paper_table1_rows():
        published = dict(zip(paper_values.TABLE1_COLUMNS, paper_values.TABLE1[(loss, k)]))
        ours_row = _ours_for(report, loss, k)
        cells = []
        for column in (*COLUMNS, PAPER_DIFF):
            paper = published[column] * (100.0 if column == PAPER_DIFF else 1.0)
            ours = (
                None if ours_row is None else (ours_row.diff_pct if column == PAPER_DIFF else ours_row.mean.get(column))
            )
            delta = None if ours is None else ours - paper
            digits = 2 if column == PAPER_DIFF else 3
            cells.append(
                (_num(ours, digits), _num(paper, digits), "-" if delta is None else f"{delta:+.{digits}f}", delta)
            )
        out.append((label, cells))
    return out


def paper_comparison_notes(report: Report) -> list[str]:
    return [
        PAPER_NOTE.replace(
            "its 'Diff (%)' column is printed as published: a fraction (0.127 means 12.7 %).",
            "its 'Diff (%)' fractions are shown here as percentages (0.127 -> 12.70).",
        ),
        "Δ = ours − paper (positive: ours is higher). Our rows are the means over seeds of Table I; '-': "
        "no such row in this sweep (its k or method was not run). Rows of ours the paper does not have "
        "(blind baseline, other methods) are only in Table I.",
    ]


def paper_comparison_md(report: Report) -> str:
    header = [f"{h} ({what})" for h in PAPER_HEADER for what in ("ours", "paper", "Δ")]
    rows = [
        (label, [x for ours, paper, delta, _ in cells for x in (ours, paper, delta)])
        for label, cells in paper_comparison(report)
    ]
    notes = paper_comparison_notes(report)
    return "\n".join(
        [
            "## Ours next to the paper (Table I, MSR-VTT)",
            "",
            _md_table(header, rows),
            "",
            *[f"{i}. {n}" for i, n in enumerate(notes, 1)],
        ]
    )


# ---- terminal ---------------------------------------------------------------------------------------------


def print_tables(report: Report) -> None:
    """Table I, [ours next to the paper], Table II on the terminal; never cut (avkd.terminal.print_table)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from avkd.terminal import print_table

    def cell(c: Cell) -> str:
        mean, std, bold = c
        text = mean if std is None else f"{mean} ± {std}"
        return f"[bold green]{text}[/]" if bold else text

    console = Console()
    t1 = Table(title=f"Table I - sweep {escape(report.sweep_name)}", show_lines=False)
    t1.add_column("")
    for h in table1_header(report.table1):
        t1.add_column(h, justify="right")
    for row, cells in table1_cells(report.table1):
        t1.add_row(escape(row.label), *[cell(c) for c in cells])
    print_table(console, t1)
    for i, note in enumerate(report.table1.notes, 1):
        console.print(f"  {i}. {escape(note)}", highlight=False)
    if report.paper:
        tp = Table(title="Ours next to the paper (Table I, MSR-VTT): ours / paper / Δ")
        tp.add_column("")
        for h in PAPER_HEADER:
            tp.add_column(h, justify="right")
        for label, cells in paper_comparison(report):
            tp.add_row(escape(label), *[f"{o} / {p} / {d}" for o, p, d, _ in cells])
        print_table(console, tp)
        for i, note in enumerate(paper_comparison_notes(report), 1):
            console.print(f"  {i}. {escape(note)}", highlight=False)
    if report.table2 is None:
        console.print("Table II: no FINISHED timing run in this experiment.")
        return
    t2 = Table(title=f"Table II - {escape(report.table2.caption)}")
    t2.add_column("Network")
    for h in table2_header(report.table2, report.paper):
        t2.add_column(h, justify="right")
    for label, cells in table2_cells(report.table2, report.paper):
        t2.add_row(escape(label), *[cell(c) for c in cells])
    print_table(console, t2)
    for i, note in enumerate(report.table2.notes, 1):
        console.print(f"  {i}. {escape(note)}", highlight=False)


# ---- index.html -------------------------------------------------------------------------------------------

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"  # reports/templates/report.html.j2: edit it to change the page


def _time(ms: int | None) -> str:
    return "-" if not ms else dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def trial_counts(sweep_run) -> str:
    """The sweep run's trial counts as tagged by its last invocation (schema.SWEEP_TRIAL_COUNTS), e.g.
    ": trials 6 finished (2 now, 4 earlier), 0 failed, 1 killed, 0 not started"; "" if none were tagged."""
    tags = sweep_run.data.tags
    m = {k: int(float(tags[v])) for k, v in schema.SWEEP_TRIAL_COUNTS.items() if v in tags}
    if "finished" not in m:
        return ""
    done = m["finished"] + m.get("skipped", 0)
    return (
        f": trials {done} finished ({m['finished']} now, {m.get('skipped', 0)} earlier), {m.get('failed', 0)} failed, "
        f"{m.get('killed', 0)} killed, {m.get('not_started', 0)} not started"
    )


def _cells(cells: list[Cell]) -> list[dict]:
    return [{"text": mean if std is None else f"{mean} ± {std}", "bold": bold} for mean, std, bold in cells]


def _report_notes(report: Report) -> list[str]:
    """Notes on the whole run (e.g. reports/deviations.py's deviations from the paper, appended by build.py)."""
    return list(getattr(report, "notes", None) or [])


def page_context(report: Report, figures: list["Figure"]) -> dict:
    """Everything the template reads: plain strings, numbers as text, links into the MLflow UI's runs view."""
    from trackers.mlflow_tracker import compare_url, runs_url

    def link(run_id: str) -> str:
        return runs_url(report.ui_url, report.experiment_id, run_id)

    sweep = report.sweep_run
    tags = sweep.data.tags
    rows1, previous = [], None
    for row, cells in table1_cells(report.table1):
        group = "student" if row.role == "student" else row.role
        rows1.append(
            {
                "label": row.label,
                "runs": [{"id": t.run_id, "link": link(t.run_id)} for t in row.trials],
                "cells": _cells(cells),
                "sep": previous is not None and group != previous,
            }
        )
        previous = group
    context = {
        "sweep_name": report.sweep_name,
        "tracking_uri": report.uri,
        "ui_url": report.ui_url,
        "sweep": {
            "run_id": sweep.info.run_id,
            "link": link(sweep.info.run_id),
            "status": sweep.info.status,
            "started": _time(sweep.info.start_time),
            "git_commit": tags.get(schema.GIT_COMMIT, "unknown"),
            "weights": tags.get(schema.WEIGHTS, "unknown"),
            "weights_detail": tags.get(schema.WEIGHTS_DETAIL, ""),
            "overrides": tags.get(schema.OVERRIDES, ""),
            "counts": trial_counts(sweep),
        },
        "experiment": {
            "id": report.experiment_id,
            "name": report.experiment_name,
            "link": runs_url(report.ui_url, report.experiment_id),
            "compare_link": compare_url(
                report.ui_url, report.experiment_id, [t.run_id for row in report.table1.rows for t in row.trials]
            ),
        },
        "table1": {"header": table1_header(report.table1), "rows": rows1, "notes": report.table1.notes},
        "paper": None,
        "table2": None,
        "notes": _report_notes(report),
        "figures": [
            {
                "title": f.title,
                "caption": f.caption,
                "data_uri": "data:image/png;base64," + base64.b64encode(f.png.read_bytes()).decode("ascii"),
            }
            for f in figures
        ],  # embedded: the page needs no other file
        "runs": [
            {
                "row": row.label,
                "seed": t.seed,
                "status": t.status,
                "id": t.run_id,
                "link": link(t.run_id),
                "config_hash": t.config_hash,
                "error": t.error,
            }
            for row in report.table1.rows
            for t in row.trials + row.missing
        ],
        "config_text": report.config_text,
    }
    if report.paper:
        context["paper"] = {
            "metrics": PAPER_HEADER,
            "notes": paper_comparison_notes(report),
            "rows": [
                {
                    "label": label,
                    "sep": label == "Teacher",
                    "cells": [
                        {
                            "ours": o,
                            "paper": p,
                            "delta": d,
                            "css": "" if v is None or v == 0 else ("delta-pos" if v > 0 else "delta-neg"),
                        }
                        for o, p, d, v in cells
                    ],
                }
                for label, cells in paper_comparison(report)
            ],
        }
    t2 = report.table2
    if t2 is not None:
        context["table2"] = {
            "caption": t2.caption,
            "run_id": t2.run_id,
            "link": link(t2.run_id),
            "header": table2_header(t2, report.paper),
            "notes": t2.notes,
            "rows": [
                {"label": label, "cells": _cells(cells), "sep": label == "Teacher"}
                for label, cells in table2_cells(t2, report.paper)
            ],
        }
    return context


def html_page(report: Report, figures: list["Figure"], templates: Path = TEMPLATES) -> str:
    """index.html: reports/templates/report.html.j2 (jinja2, autoescaped) filled from page_context."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE).render(**page_context(report, figures))


def write_tables(report: Report, folder: Path) -> None:
    (folder / "table1.md").write_text(table1_md(report), encoding="utf-8")
    (folder / "table1.tex").write_text(table1_tex(report), encoding="utf-8")
    write_table1_csv(report, folder / "table1.csv")
    for name in ("table2.md", "table2.tex", "table2.csv"):  # stale ones from an earlier build would mislead
        (folder / name).unlink(missing_ok=True)
    if report.table2 is not None:
        (folder / "table2.md").write_text(table2_md(report), encoding="utf-8")
        (folder / "table2.tex").write_text(table2_tex(report), encoding="utf-8")
        write_table2_csv(report, folder / "table2.csv")
