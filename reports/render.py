"""Table I / Table II as Markdown, CSV, LaTeX (booktabs), HTML and rich terminal tables, and index.html."""
from __future__ import annotations

import base64
import csv
import datetime as dt
import html
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
PAPER_NOTE = ("Published values of Çaylı et al. (MSR-VTT test set, pretrained backbones, full-size model), "
              "transcribed from the paper; its 'Diff (%)' column is printed as published: a fraction "
              "(0.127 means 12.7 %).")

PAPER_LOSSES = {"rep": "L_rep", "rep+ce": "L_rep + L_CE"}

# A cell is (mean text, std text or None, bold); each format joins them its own way.
Cell = tuple[str, "str | None", bool]


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table1_cells(table: Table1) -> list[tuple[Row, list[Cell]]]:
    out = []
    for row in table.rows:
        cells: list[Cell] = []
        for column in COLUMNS:
            mean, std = row.mean.get(column), row.std.get(column)
            bold = mean is not None and round(mean, 3) == table.best.get(column)
            cells.append((_num(mean), None if (mean is None or std is None) else _num(std), bold))
        cells.append((_num(row.diff_pct, 2), None, False))
        cells.append((str(row.n), None, False))
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
            cells += [(f"{published[0]:.2f}", None, False), (f"{published[1]:.1f}", None, False)] if published \
                else [("-", None, False), ("-", None, False)]
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
    parts = [f"# Table I: captioning metrics on the test split (sweep `{report.sweep_name}`)", "",
             _md_table(HEADER1, rows), ""]
    parts += [f"{i}. {note}" for i, note in enumerate(report.table1.notes, 1)]
    if report.paper:
        paper_rows = [(label, cells) for label, _, _, cells in paper_table1_rows()]
        parts += ["", "## Table I as published (MSR-VTT)", "",
                  _md_table(HEADER1[:-2] + ["Diff (as published)"], paper_rows), "", PAPER_NOTE]
    return "\n".join(parts) + "\n"


def table2_md(report: Report) -> str:
    t2 = report.table2
    header = table2_header(t2, report.paper)
    rows = [(label, [_md_cell(c) for c in cells]) for label, cells in table2_cells(t2, report.paper)]
    parts = [f"# Table II: {t2.caption} (timing run {t2.run_id})", "", _md_table(header, rows), ""]
    parts += [f"{i}. {note}" for i, note in enumerate(t2.notes, 1)]
    if report.paper:
        parts.append(f"{len(t2.notes) + 1}. Paper columns: the published Table II "
                     f"({paper_values.TABLE2_VIDEOS} MSR-VTT test videos; feature extraction time).")
    return "\n".join(parts) + "\n"


# ---- CSV --------------------------------------------------------------------------------------------------

def _csv_num(value: float | None) -> str:
    return "" if value is None else repr(round(float(value), 10))


def write_table1_csv(report: Report, path: Path) -> None:
    header = ["row", "role", "loss", "k", "n", "seeds"]
    for column in COLUMNS:
        header += [f"{column}_mean", f"{column}_std"]
    header += ["diff_pct", "score_terms", "run_ids", "missing"]
    if report.paper:
        header += [f"paper_{c}" for c in paper_values.TABLE1_COLUMNS[:-1]] + ["paper_diff_published"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in report.table1.rows:
            line = [row.label, row.role, row.loss, f"{row.k:g}", row.n, " ".join(t.seed for t in row.trials)]
            for column in COLUMNS:
                line += [_csv_num(row.mean.get(column)), _csv_num(row.std.get(column))]
            line += [_csv_num(row.diff_pct), ",".join(report.table1.terms),
                     " ".join(t.run_id for t in row.trials),
                     " ".join(f"seed {t.seed} {t.status} {t.run_id}" for t in row.missing)]
            if report.paper:
                published = paper_values.TABLE1.get(("ce", 1.0) if row.role == "teacher" else (row.loss, round(row.k, 6)))
                line += [repr(v) for v in published] if published and row.role != "blind" \
                    else [""] * len(paper_values.TABLE1_COLUMNS)
            writer.writerow(line)


def write_table2_csv(report: Report, path: Path) -> None:
    t2 = report.table2
    header = ["row", "k", "extract_mean_s", "extract_std_s", "extract_reduction_pct",
              "e2e_mean_s", "e2e_std_s", "e2e_reduction_pct"] + (["decode_mean_s"] if _has_decoding(t2) else [])
    for t in t2.thresholds:
        header += [f"ee{t:g}_decode_s", f"ee{t:g}_score_drop_pct"]
    header += ["paper_time_s", "paper_diff_pct"] if report.paper else []
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in t2.rows:
            line = [r.label, f"{r.k:g}", _csv_num(r.extract_mean), _csv_num(r.extract_std), _csv_num(r.extract_reduction),
                    _csv_num(r.e2e_mean), _csv_num(r.e2e_std), _csv_num(r.e2e_reduction)]
            line += [_csv_num(r.decode_mean)] if _has_decoding(t2) else []
            for t in t2.thresholds:
                line += [_csv_num(v) for v in r.early_exit.get(t, (None, None))]
            if report.paper:
                published = paper_values.TABLE2.get(round(r.k, 6))
                line += [repr(published[0]), repr(published[1])] if published else ["", ""]
            writer.writerow(line)


# ---- LaTeX (booktabs) -------------------------------------------------------------------------------------

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "×": r"$\times$",
        "−": r"$-$", "†": r"$^\dagger$", "→": r"$\to$", "<": r"$<$", ">": r"$>$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _tex_cell(cell: Cell) -> str:
    mean, std, bold = cell
    mean = rf"\textbf{{{mean}}}" if bold else mean
    return mean if std is None else rf"{mean} $\pm$ {std}"


def _tex_label(role: str, loss: str, k: float) -> str:
    if role == "teacher":
        return "Teacher"
    if role == "blind":
        return r"Blind baseline$^\dagger$"
    name = {"rep": r"$\mathcal{L}_{rep}$", "rep+ce": r"$\mathcal{L}_{rep} + \mathcal{L}_{CE}$"}.get(loss, tex_escape(loss))
    return rf"{name} Student ($k = {k:g}$)"


def _tex_table(caption: str, label: str, header: list[str], rows: list[tuple[str, list[str], bool]],
               notes: list[str]) -> str:
    """rows: (label, cells, rule_before)."""
    lines = [r"% Generated by reports/build.py from MLflow. Needs \usepackage{booktabs}.",
             r"\begin{table*}[t]", r"\centering", rf"\caption{{{tex_escape(caption)}}}", rf"\label{{{label}}}",
             r"\begin{tabular}{l" + "c" * len(header) + "}", r"\toprule",
             " & " + " & ".join(tex_escape(h) for h in header) + r" \\", r"\midrule"]
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
        rows.append((_tex_label(row.role, row.loss, row.k), [_tex_cell(c) for c in cells],
                     previous is not None and group != previous))
        previous = group
    text = _tex_table(f"Captioning metrics on the test split (sweep {report.sweep_name}).", "tab:avkd-table1",
                      HEADER1, rows, report.table1.notes)
    if report.paper:
        paper_rows = [(_tex_label("teacher" if loss == "ce" else "student", loss, k), cells, loss == "ce")
                      for _, loss, k, cells in paper_table1_rows()]
        text += "\n" + _tex_table("Table I as published (MSR-VTT test set).", "tab:avkd-table1-paper",
                                  HEADER1[:-2] + ["Diff (as published)"], paper_rows, [PAPER_NOTE])
    return text


def table2_tex(report: Report) -> str:
    t2 = report.table2
    header = table2_header(t2, report.paper)
    rows = [(tex_escape(label), [_tex_cell(c) for c in cells], label == "Teacher")
            for label, cells in table2_cells(t2, report.paper)]
    return _tex_table(t2.caption + ".", "tab:avkd-table2", header, rows, t2.notes)


# ---- terminal ---------------------------------------------------------------------------------------------

def print_tables(report: Report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def cell(c: Cell) -> str:
        mean, std, bold = c
        text = mean if std is None else f"{mean} ± {std}"
        return f"[bold green]{text}[/]" if bold else text

    console = Console()
    t1 = Table(title=f"Table I - sweep {escape(report.sweep_name)}", show_lines=False)
    t1.add_column("")
    for h in HEADER1:
        t1.add_column(h, justify="right")
    for row, cells in table1_cells(report.table1):
        t1.add_row(escape(row.label), *[cell(c) for c in cells])
    console.print(t1)
    for i, note in enumerate(report.table1.notes, 1):
        console.print(f"  {i}. {escape(note)}", highlight=False)
    if report.paper:
        tp = Table(title="Table I as published (MSR-VTT)")
        tp.add_column("")
        for h in HEADER1[:-2] + ["Diff (as published)"]:
            tp.add_column(h, justify="right")
        for label, _, _, cells in paper_table1_rows():
            tp.add_row(escape(label), *cells)
        console.print(tp)
        console.print(f"  {escape(PAPER_NOTE)}", highlight=False)
    if report.table2 is None:
        console.print("Table II: no FINISHED timing run in this experiment.")
        return
    t2 = Table(title=f"Table II - {escape(report.table2.caption)}")
    t2.add_column("Network")
    for h in table2_header(report.table2, report.paper):
        t2.add_column(h, justify="right")
    for label, cells in table2_cells(report.table2, report.paper):
        t2.add_row(escape(label), *[cell(c) for c in cells])
    console.print(t2)
    for i, note in enumerate(report.table2.notes, 1):
        console.print(f"  {i}. {escape(note)}", highlight=False)


# ---- index.html -------------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1f2328; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { padding: 0.3em 0.6em; border-bottom: 1px solid #d0d7de; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #1f2328; }
tr.sep td { border-top: 2px solid #8c959f; }
td b { color: #0a3069; }
ol.notes { font-size: 0.85em; color: #57606a; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: 0.85em; color: #57606a; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 0.8em; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.meta dt { font-weight: bold; }
.paper { background: #fff8c5; }
"""


def _h(text: object) -> str:
    return html.escape(str(text))


def _html_cell(cell: Cell) -> str:
    mean, std, bold = cell
    text = _h(mean) if std is None else f"{_h(mean)} ± {_h(std)}"
    return f"<b>{text}</b>" if bold else text


def _html_table(header: list[str], rows: list[tuple[str, list[str], bool]], css_class: str = "") -> str:
    """rows: (label html, cells html, separator line above)."""
    out = [f'<table class="{css_class}">' if css_class else "<table>", "<thead><tr><th></th>"]
    out += [f"<th>{_h(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for label, cells, sep in rows:
        out.append('<tr class="sep">' if sep else "<tr>")
        out.append(f"<td>{label}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _notes(notes: list[str]) -> str:
    return '<ol class="notes">' + "".join(f"<li>{_h(n)}</li>" for n in notes) + "</ol>"


def _time(ms: int | None) -> str:
    return "-" if not ms else dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def trial_counts(sweep_run) -> str:
    """The sweep run's trial counts as logged by its last invocation (schema.SWEEP_TRIAL_COUNTS), e.g.
    ": trials 6 finished (2 now, 4 earlier), 0 failed, 1 killed, 0 not started"; "" if none were logged."""
    m = {k: int(sweep_run.data.metrics[v]) for k, v in schema.SWEEP_TRIAL_COUNTS.items() if v in sweep_run.data.metrics}
    if "finished" not in m:
        return ""
    done = m["finished"] + m.get("skipped", 0)
    return (f": trials {done} finished ({m['finished']} now, {m.get('skipped', 0)} earlier), {m.get('failed', 0)} failed, "
            f"{m.get('killed', 0)} killed, {m.get('not_started', 0)} not started")


def html_page(report: Report, figures: list["Figure"]) -> str:
    def link(run_id: str) -> str:
        return f'<a href="{_h(report.run_link(run_id))}">{_h(run_id[:8])}</a>'

    sweep = report.sweep_run
    body = [f"<h1>Sweep {_h(report.sweep_name)}</h1>", '<dl class="meta">',
            f"<dt>Sweep run</dt><dd>{link(sweep.info.run_id)} ({_h(sweep.info.status)}, "
            f"started {_h(_time(sweep.info.start_time))}){_h(trial_counts(sweep))}</dd>",
            f'<dt>Experiment</dt><dd><a href="{_h(report.ui_url)}/#/experiments/{_h(report.experiment_id)}">'
            f"{_h(report.experiment_name)}</a> (id {_h(report.experiment_id)})</dd>",
            f"<dt>Tracking URI</dt><dd><code>{_h(report.uri)}</code></dd>",
            f"<dt>Git commit</dt><dd><code>{_h(sweep.data.tags.get(schema.GIT_COMMIT, 'unknown'))}</code></dd>",
            "<dt>MLflow UI</dt><dd>links open the runs in <code>make ui</code> "
            f"(<code>{_h(report.ui_url)}</code>)</dd></dl>"]

    # Table I
    rows, previous = [], None
    for row, cells in table1_cells(report.table1):
        group = "student" if row.role == "student" else row.role
        runs = " ".join(link(t.run_id) for t in row.trials)
        rows.append((f"{_h(row.label)}<br><small>{runs}</small>", [_html_cell(c) for c in cells],
                     previous is not None and group != previous))
        previous = group
    body += ["<h2>Table I: captioning metrics (test split)</h2>", _html_table(HEADER1, rows),
             _notes(report.table1.notes)]
    if report.paper:
        paper_rows = [(_h(label), [_h(c) for c in cells], loss == "ce") for label, loss, _, cells in paper_table1_rows()]
        body += ["<h3>Table I as published (MSR-VTT)</h3>",
                 _html_table(HEADER1[:-2] + ["Diff (as published)"], paper_rows, "paper"), _notes([PAPER_NOTE])]

    # Table II
    body.append("<h2>Table II: time per video</h2>")
    if report.table2 is None:
        body.append("<p>No FINISHED timing run in this experiment (run <code>python -m avkd bench</code>).</p>")
    else:
        t2 = report.table2
        rows2 = [(_h(label), [_html_cell(c) for c in cells], label == "Teacher")
                 for label, cells in table2_cells(t2, report.paper)]
        body += [f"<p>{_h(t2.caption)}; timing run {link(t2.run_id)}.</p>",
                 _html_table(table2_header(t2, report.paper), rows2), _notes(t2.notes)]

    # Figures: PNGs embedded as data URIs, so the page needs no other file.
    body.append("<h2>Figures</h2>")
    for fig in figures:
        data = base64.b64encode(fig.png.read_bytes()).decode("ascii")
        body.append(f'<figure><img alt="{_h(fig.title)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{_h(fig.title)}: {_h(fig.caption)}</figcaption></figure>")
    if report.table2 is None:
        body.append("<p>Time figures need a timing run.</p>")

    # Runs
    body.append("<h2>Runs</h2><table><thead><tr><th>Row</th><th>Seed</th><th>Status</th><th>Run</th>"
                "<th>Config hash</th><th>Note</th></tr></thead><tbody>")
    for row in report.table1.rows:
        for t in row.trials + row.missing:
            body.append(f"<tr><td>{_h(row.label)}</td><td>{_h(t.seed)}</td><td>{_h(t.status)}</td>"
                        f"<td>{link(t.run_id)}</td><td><code>{_h(t.config_hash)}</code></td><td>{_h(t.error)}</td></tr>")
    body.append("</tbody></table>")
    body += ["<h2>Sweep configuration</h2>", f"<pre>{_h(report.config_text)}</pre>"]

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>avkd report: {_h(report.sweep_name)}</title><style>{CSS}</style></head>"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")


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
