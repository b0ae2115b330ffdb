"""Build a sweep's report from MLflow: Table I, Table II, figures and a self-contained index.html.

    python reports/build.py [--experiment NAME | --sweep-run RUN_ID] [--tracking-uri URI] [--out reports/out] [--paper]

Data flows media -> features -> trials -> MLflow -> this script: it reads only MLflow.
Outputs go to <out>/<sweep name>/ (a relative --out is relative to the repo root).

Which runs make Table I (the selection rule):
1. The sweep run: --sweep-run; else the most recent run tagged avkd.role=sweep in --experiment;
   else the most recent one in the whole tracking store.
2. Candidates: the teacher/student/blind runs of its experiment that started before the sweep run
   ended. Earlier sweep runs count too: a resumed sweep skips trials that already have a FINISHED run.
3. If the sweep run logged its grid (params grid.ks, grid.losses, grid.seeds, grid.blind), runs
   outside that grid are left out.
4. For each avkd.config_hash, the most recent FINISHED run. If two hashes give the same
   (role, loss, k, seed) - the config changed between sweeps - the most recent run wins.
5. Trials of the chosen sweep run with no FINISHED run (FAILED, KILLED, still RUNNING) are listed
   in a note naming the config; their cells stay empty.
Table II comes from the most recent FINISHED timing run (avkd.role=timing) of the experiment; its
decoding columns (when the trials logged test/decode_s_per_video, and early exit's ee/t<t>/...)
come from the Table I runs at each k.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `reports`, `trackers` and `avkd` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlflow.entities import Run  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from avkd.errors import AvkdError  # noqa: E402
from avkd.evaluation import score as S  # noqa: E402
from reports import deviations  # noqa: E402
from reports.model import COLUMNS, LABELS, Report, Row, Table1, Table2, TimingRow, Trial  # noqa: E402
from trackers import mlflow_tracker as mt  # noqa: E402
from trackers import schema  # noqa: E402

REQUIRED_TAGS = (schema.ROLE, schema.LOSS, schema.K, schema.SEED, schema.CONFIG_HASH)


# ---- what is read from MLflow ---------------------------------------------------------------------

# ---- finding the runs -----------------------------------------------------------------------------


def open_store(uri: str) -> MlflowClient:
    """A client for an existing store (never creates an empty database by accident)."""
    db = mt.sqlite_path(uri)
    if db is not None and not db.is_file():
        raise AvkdError(f"no MLflow database at {db} (run a sweep first, or pass --tracking-uri)")
    return mt.mlflow_client(uri)


def find_sweep_run(
    client: MlflowClient, uri: str, experiment: str | None = None, sweep_run_id: str | None = None
) -> Run:
    """The sweep run to report on (see the module docstring, rule 1)."""
    if sweep_run_id:
        try:
            run = client.get_run(sweep_run_id)
        except Exception:  # noqa: BLE001 - MLflow raises several kinds for a bad id
            raise AvkdError(f"no run {sweep_run_id!r} in {uri}") from None
        role = run.data.tags.get(schema.ROLE)
        if role != "sweep":
            raise AvkdError(f"run {sweep_run_id} is not a sweep run ({schema.ROLE}={role!r})")
        return run
    experiments = client.search_experiments()
    if experiment:
        found = [e for e in experiments if e.name == experiment]
        if not found:
            known = ", ".join(sorted(e.name for e in experiments)) or "none"
            raise AvkdError(f"no experiment {experiment!r} in {uri} (known: {known})")
        experiments = found
    runs = client.search_runs(
        [e.experiment_id for e in experiments],
        f"tags.`{schema.ROLE}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        where = f"experiment {experiment!r}" if experiment else uri
        raise AvkdError(f"no sweep run ({schema.ROLE}=sweep) in {where}; run a sweep first")
    return runs[0]


def _early_exit_metrics(metrics: dict[str, float]) -> dict[float, dict[str, float]]:
    """ee/t0.9/score -> {0.9: {"score": ...}} (the trials' early-exit evaluations)."""
    out: dict[float, dict[str, float]] = {}
    for key, value in metrics.items():
        parsed = schema.parse_early_exit_metric(key)
        if parsed:
            out.setdefault(parsed[0], {})[parsed[1]] = value
    return out


def _as_trial(run: Run) -> Trial:
    tags = run.data.tags
    return Trial(
        run_id=run.info.run_id,
        role=tags[schema.ROLE],
        loss=tags[schema.LOSS],
        k=float(tags[schema.K]),
        seed=tags[schema.SEED],
        config_hash=tags[schema.CONFIG_HASH],
        status=run.info.status,
        start_time=run.info.start_time or 0,
        parent=tags.get(schema.PARENT),
        metrics={
            key[len(schema.TEST_PREFIX) :]: value
            for key, value in run.data.metrics.items()
            if key.startswith(schema.TEST_PREFIX)
        },
        error=tags.get(schema.ERROR, ""),
        early_exit=_early_exit_metrics(run.data.metrics),
        guide=tags.get(schema.GUIDE, "") if tags[schema.ROLE] == "guide" else "",
        tuned=tags.get(schema.TUNED) == "true",
    )


def _is_table1_run(run: Run) -> bool:
    """Teacher, student and blind runs, and the single-modality teachers (modality rows, k = 1)."""
    tags = run.data.tags
    role = tags.get(schema.ROLE)
    if role == "guide":
        return tags.get(schema.GUIDE) in schema.MODALITY_GUIDES and tags.get(schema.K) in ("1", "1.0")
    return role in schema.TRIAL_ROLES


def _check_tags(runs: list[Run], sweep_id: str) -> None:
    """Trial runs (and every child of the sweep) must carry the schema's tags."""
    bad = []
    for run in runs:
        tags = run.data.tags
        role = tags.get(schema.ROLE)
        if role in ("sweep", "timing", "tune"):
            continue
        if role is None and tags.get(schema.PARENT) != sweep_id:
            continue  # someone's unrelated run in the same experiment
        missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
        try:
            float(tags.get(schema.K, "0"))
        except ValueError:
            missing.append(f"{schema.K}={tags[schema.K]!r} is not a number")
        if missing:
            bad.append(f"{run.info.run_id} ({', '.join(missing)})")
    if bad:
        raise AvkdError(f"runs missing the schema's tags (trackers/schema.py): {'; '.join(bad)}")


def _logged_grid(sweep_run: Run) -> dict | None:
    """The sweep's grid from its params (SweepConfig.flat()), or None if it was not logged."""
    params = sweep_run.data.params
    try:
        return {
            "ks": [round(float(k), 6) for k in ast.literal_eval(params["grid.ks"])],
            "losses": list(ast.literal_eval(params["grid.losses"])),
            "seeds": [str(s) for s in ast.literal_eval(params["grid.seeds"])],
            "blind": params.get("grid.blind", "True") == "True",
            "modality_teachers": params.get("grid.modality_teachers", "False") == "True",  # older sweeps had none
        }
    except (KeyError, ValueError, SyntaxError, TypeError):
        return None


def _in_grid(t: Trial, grid: dict | None) -> bool:
    if grid is None:
        return True
    if t.seed not in grid["seeds"]:
        return False
    if t.role == "student":
        return round(t.k, 6) in grid["ks"] and t.loss in grid["losses"]
    if t.role == "guide":
        return grid["modality_teachers"]
    return t.role == "teacher" or grid["blind"]


def select_trials(runs: list[Run], sweep_run: Run) -> tuple[list[Trial], list[Trial], list[str]]:
    """Apply rules 2-5: (chosen FINISHED trials, trials of the sweep without a FINISHED run, notes)."""
    sweep_id = sweep_run.info.run_id
    _check_tags(runs, sweep_id)
    ended = sweep_run.info.end_time if sweep_run.info.status != "RUNNING" else None
    grid = _logged_grid(sweep_run)
    trials = [_as_trial(r) for r in runs if _is_table1_run(r)]
    trials = [t for t in trials if (ended is None or t.start_time <= ended) and _in_grid(t, grid)]
    trials.sort(key=lambda t: t.start_time)  # oldest first: later ones overwrite
    notes = []

    by_hash: dict[str, Trial] = {}
    for t in trials:
        if t.status == "FINISHED":
            by_hash[t.config_hash] = t
    by_cell: dict[tuple, Trial] = {}
    for t in sorted(by_hash.values(), key=lambda t: t.start_time):
        cell = (t.role, t.loss, round(t.k, 6), t.guide, t.seed)
        if cell in by_cell:
            notes.append(
                f"{_describe(by_cell[cell])}: superseded by the more recent run {t.run_id} "
                f"(config hash {by_cell[cell].config_hash} → {t.config_hash})."
            )
        by_cell[cell] = t

    latest_unfinished: dict[str, Trial] = {}
    for t in trials:
        if t.parent == sweep_id and t.config_hash not in by_hash:
            latest_unfinished[t.config_hash] = t
    return list(by_cell.values()), list(latest_unfinished.values()), notes


def _describe(t: Trial) -> str:
    who = {"teacher": "teacher", "blind": "blind baseline", "guide": f"{t.guide}-only teacher"}.get(
        t.role, f"student loss={t.loss} k={t.k:g}"
    )
    return f"{who} seed {t.seed}"


# ---- Table I ------------------------------------------------------------------------------------------


def _run_score(metrics: dict[str, float], terms: list[str]) -> float | None:
    """SCORE (avkd/evaluation/score.py) over the table's common terms; None when there are none."""
    return S.score(metrics, terms) if terms else None


def _row_order(row: Row) -> tuple:
    """The paper's order: rep students by k, rep+ce students by k, other methods by k, teacher, then the
    modality rows (audio-only, visual-only teacher) and the blind baseline."""
    if row.role == "student":
        group = {"rep": 0, "rep+ce": 1}.get(row.loss, 2)
        return (group, row.loss if group == 2 else "", row.k)
    return ({"teacher": 3, "guide": 4}.get(row.role, 5), row.guide, row.k)


def build_table1(
    trials: list[Trial],
    missing: list[Trial],
    notes: list[str],
    bootstrap_samples: int = S.BOOTSTRAP_SAMPLES,
    tune_note: str | None = None,
) -> Table1:
    rows: dict[tuple, Row] = {}
    for kind, group in (("trials", trials), ("missing", missing)):
        for t in group:
            row = rows.setdefault((t.role, t.loss, round(t.k, 6), t.guide), Row(t.role, t.loss, t.k, guide=t.guide))
            getattr(row, kind).append(t)
    ordered = sorted(rows.values(), key=_row_order)
    terms = S.common_terms(t.metrics for t in trials)  # one SCORE definition for the whole table
    for row in ordered:
        row.trials.sort(key=lambda t: (0, int(t.seed), "") if t.seed.lstrip("-").isdigit() else (1, 0, t.seed))
        for metric in schema.TABLE1_METRICS:
            row.mean[metric], row.std[metric] = S.mean_std(t.metrics[metric] for t in row.trials if metric in t.metrics)
        scores = [_run_score(t.metrics, terms) for t in row.trials]
        row.mean[schema.SCORE], row.std[schema.SCORE] = S.mean_std(s for s in scores if s is not None)
    for row in ordered:
        row.decode_s = S.mean_std(
            t.metrics[schema.DECODE_S_PER_VIDEO] for t in row.trials if schema.DECODE_S_PER_VIDEO in t.metrics
        )[0]
        row.early_exit = _row_early_exit(row, terms)
    # Diff is relative to the teacher's mean SCORE (a zero SCORE would make it undefined).
    teacher = next((r for r in ordered if r.role == "teacher" and r.mean[schema.SCORE]), None)
    for row in ordered:
        if teacher is not None and row.mean[schema.SCORE] is not None:
            row.diff_pct = 100.0 * S.relative_diff(row.mean[schema.SCORE], teacher.mean[schema.SCORE])
    summary = table1_summary(ordered, bootstrap_samples)
    _add_intervals(ordered, summary)
    best = {}
    for column in COLUMNS:
        values = [round(r.mean[column], 3) for r in ordered if r.mean.get(column) is not None]
        if values:
            best[column] = max(values)
    groups = sorted({g for r in ordered for g in r.attributes}, key=_attribute_order)
    return Table1(
        ordered, terms, best, _table1_notes(ordered, terms, teacher, notes, summary, tune_note), summary, groups
    )


def table1_summary(rows: list[Row], bootstrap_samples: int = S.BOOTSTRAP_SAMPLES) -> dict:
    """summary.json: score.summarize over the rows' finished trials (the teacher row is Diff's reference)."""
    trials = [S.TrialScores(row.key, t.seed, t.metrics, t.per_video) for row in rows for t in row.trials]
    return S.summarize(trials, teacher="teacher", metrics=schema.TABLE1_METRICS, samples=bootstrap_samples)


def _add_intervals(rows: list[Row], summary: dict) -> None:
    """Copy the summary's t-intervals, Diff interval and attribute accuracy onto the rows."""
    for row in rows:
        entry = summary["rows"].get(row.key)
        if entry is None:
            continue
        row.half = {m: i["half_width"] for m, i in entry["metrics"].items()}
        row.attributes = {g: (i["mean"], i["half_width"]) for g, i in entry["attributes"].items()}
        if entry["diff"] is not None:
            row.diff_ci = (100.0 * entry["diff"]["low"], 100.0 * entry["diff"]["high"])
            row.distinguishable = entry["diff"]["distinguishable"]


def _verdicts(rows: list[Row]) -> str:
    """The Diff intervals in words: which rows score below, above, or indistinguishably from the teacher."""
    groups: dict[str, list[str]] = {"below": [], "above": [], "not distinguishable from": []}
    for r in rows:
        if r.diff_ci is not None:
            verdict = (
                "not distinguishable from" if not r.distinguishable else ("below" if r.diff_ci[0] > 0 else "above")
            )
            groups[verdict].append(r.label)
    parts = [f"{verdict} the teacher: {', '.join(labels)}" for verdict, labels in groups.items() if labels]
    return "From the Diff intervals (not by eye): " + "; ".join(parts) + "."


def _attribute_order(group: str) -> tuple:
    from avkd.evaluation.attributes import GROUPS

    order = list(GROUPS)
    return (order.index(group), "") if group in order else (len(order), group)


def _row_early_exit(row: Row, terms: list[str]) -> list[tuple[float, float, float]]:
    """(threshold, mean decoding s/video, mean SCORE) for the thresholds every trial of the row evaluated."""
    common = set.intersection(*(set(t.early_exit) for t in row.trials)) if row.trials else set()
    points = []
    for threshold in sorted(common, reverse=True):
        runs = [t.early_exit[threshold] for t in row.trials]
        try:  # the same SCORE terms as Table I (an AvkdError: a metric the table's SCORE needs is missing)
            scores = [_run_score(r, terms) for r in runs]
            decode_s = statistics.fmean(r[schema.DECODE_S_PER_VIDEO] for r in runs)
        except (KeyError, AvkdError):
            continue
        if None not in scores:
            points.append((threshold, decode_s, statistics.fmean(scores)))
    return points


def _table1_notes(
    rows: list[Row], terms: list[str], teacher: Row | None, extra: list[str], summary: dict, tune_note: str | None
) -> list[str]:
    notes = [
        "Cells: mean ± half-width of the 95 % confidence interval over the n seeds (Student t, n − 1 degrees "
        "of freedom): the interval is [mean − half-width, mean + half-width]. Bold: the best mean of each "
        "column (ties at 3 decimals are all bold)."
    ]
    few = [f"{r.label} (n = {r.n})" for r in rows if 0 < r.n < 3]
    if few:
        notes.append(
            "Fewer than 3 seeds in " + ", ".join(few) + ": with n = 1 there is no interval (the cell is a "
            "single run), with n = 2 the interval is very wide (t = 12.7); such rows say little about noise."
        )
    full = [LABELS[t] for t in S.TERMS]
    used = [LABELS[t] for t in terms]
    if used == full:
        notes.append(f"SCORE = mean of [{', '.join(full)}] (the paper's definition), recomputed from the metrics.")
    else:
        absent = [LABELS[t] for t in S.TERMS if t not in terms]
        notes.append(
            f"'-': metric not available ({', '.join(absent)}; SPICE needs the Stanford CoreNLP jars). "
            f"SCORE here averages [{', '.join(used) or 'nothing'}] instead of the paper's "
            f"[{', '.join(full)}], so it is not comparable with SCOREs that include them."
        )
    notes.append(
        "Diff (%) = 100 × (SCORE_teacher − SCORE) / SCORE_teacher, a true percentage (positive: below "
        "the teacher). The paper's 'Diff (%)' column holds this ratio as a fraction (0.008 means 0.8 %)."
    )
    if teacher is None:
        notes.append("No FINISHED teacher run: Diff cannot be computed.")
    elif any(r.diff_ci for r in rows):
        b = summary["bootstrap"]
        videos = max(e["diff"]["videos"] for e in summary["rows"].values() if e["diff"])
        notes.append(
            f"Diff 95 % CI: paired bootstrap over the {videos} test videos ({b['samples']} resamples, seed {b['seed']}"
            f"{'; so few videos make this interval unreliable' if videos < 20 else ''}): "
            "each resample draws the test videos with replacement once and scores teacher and row on the "
            "same videos, pairing seed s of the row with seed s of the teacher; the interval is the 2.5-97.5 "
            "percentiles of the resampled Diff, computed from per-video SCOREs (per_video_scores.csv), so its "
            "centre can differ slightly from the Diff column (corpus-level metrics). ≈: not distinguishable "
            "from the teacher (the interval contains 0)."
        )
        notes.append(_verdicts(rows))
    if any(r.role == "blind" for r in rows):
        notes.append(
            "† Blind baseline: the decoder gets zero latent vectors (no audio or video), "
            "so it shows what the language prior alone scores."
        )
    if any(r.role == "guide" for r in rows):
        notes.append(
            "‡ Modality rows: a teacher trained like the audio-visual one (k = 1, L_CE) with the other "
            "modality's latent zeroed: what audio alone and video alone give."
        )
    if any(r.attributes for r in rows):
        notes.append(
            "Attribute accuracy (Attr columns): the share of each clip's true attributes (stored by the "
            "corpus generator) that the generated caption states exactly, per group (visual static: colour, "
            "shape, size, count, background; audio: sound, pitch, rhythm; visual/audio event: the brief "
            "event or its absence); mean ± 95 % t-interval over seeds (avkd/evaluation/attributes.py)."
        )
    if tune_note:
        notes.append(tune_note)
    for row in rows:
        for t in row.missing:
            reason = f": {t.error}" if t.error else ""
            notes.append(
                f"Missing: {_describe(t)} is {t.status} (config hash {t.config_hash}, run {t.run_id}){reason}."
            )
    notes.append(
        "Runs: for each config hash the most recent FINISHED run in the experiment, within the sweep's "
        "grid (a resumed sweep reuses finished trials of earlier sweep runs)."
    )
    return notes + extra


# ---- Table II -----------------------------------------------------------------------------------------


def build_table2(run: Run, values: dict[float, dict[tuple[bool, bool], float]]) -> Table2:
    """`values`: mt.timing_values of the timing run (k -> {(end_to_end, std): seconds per video})."""
    rows = [
        TimingRow(k, v[(False, False)], v.get((False, True)), v.get((True, False)), v.get((True, True)))
        for k, v in values.items()
        if (False, False) in v
    ]
    rows.sort(key=lambda r: r.k)  # students by k, then the teacher (k = 1)
    teacher = next((r for r in rows if r.k >= 1.0), None)
    # the audio backbone the timing run used (its params are the flattened config; older runs: Cnn14)
    audio = {"cnn10": "Cnn10", "cnn14": "Cnn14"}.get(run.data.params.get("features.audio_model", "cnn14"), "Cnn14")
    notes = [
        "Seconds per video, mean ± standard deviation over the timed videos. Extraction: computing the "
        f"Inception-v3 and {audio} features (SimPF pooling included) from already-decoded frames and audio, "
        "what the paper's Table II times; end-to-end: opening and decoding the video file (selected frames, "
        "audio) plus extraction.",
        "Reduction (%) = 100 × (teacher − student) / teacher.",
    ]
    if teacher is None:
        notes.append("The timing run has no teacher time: reductions cannot be computed.")
    else:
        for r in rows:
            r.extract_reduction = 100.0 * S.relative_diff(r.extract_mean, teacher.extract_mean)
            if r.e2e_mean is not None and teacher.e2e_mean:
                r.e2e_reduction = 100.0 * S.relative_diff(r.e2e_mean, teacher.e2e_mean)
    p = run.data.params
    parts = [
        f"{p[schema.BENCH_VIDEOS]} videos" if schema.BENCH_VIDEOS in p else None,
        f"{p[schema.BENCH_THREADS]} threads" if schema.BENCH_THREADS in p else None,
        f"device {p[schema.BENCH_DEVICE]}" if schema.BENCH_DEVICE in p else None,
        f"frames {p[schema.BENCH_IMAGE_SIZE]}px" if schema.BENCH_IMAGE_SIZE in p else None,
        f"{run.data.tags.get(schema.WEIGHTS, '?')} weights",
    ]
    caption = "Time per video (s): " + ", ".join(x for x in parts if x)
    return Table2(run.info.run_id, rows, caption, notes)


def add_decoding(t2: Table2, table1: Table1) -> None:
    """Table II's decoding columns: per k, the mean over the Table I runs at that k (teacher at k = 1).

    Early exit, per threshold: decoding s/video and the SCORE drop vs the same runs' full decoder.
    """
    for r in t2.rows:
        rows = [row for row in table1.rows if row.role in ("teacher", "student") and round(row.k, 6) == round(r.k, 6)]
        r.decode_mean = S.mean_std(row.decode_s for row in rows if row.decode_s is not None)[0]
        by_threshold: dict[float, list[tuple[float, float]]] = {}
        for row in rows:
            full = row.mean.get(schema.SCORE)
            for threshold, decode_s, score in row.early_exit:
                if full:
                    by_threshold.setdefault(threshold, []).append((decode_s, 100.0 * S.relative_diff(score, full)))
        r.early_exit = {
            th: (statistics.fmean(d for d, _ in v), statistics.fmean(p for _, p in v)) for th, v in by_threshold.items()
        }
    t2.thresholds = sorted({th for r in t2.rows for th in r.early_exit}, reverse=True)
    if any(r.decode_mean is not None for r in t2.rows):
        t2.notes.append(
            "Caption decoding: beam search of the test split, seconds per video, mean over the Table I runs at "
            "that k (every method and seed; the teacher at k = 1), timed inside the trials."
        )
    if t2.thresholds:
        t2.notes.append(
            "EE t: early exit at confidence threshold t (a step stops at the first exit head whose top "
            "word probability exceeds t); SCORE drop (%) = 100 × (SCORE_full − SCORE_t) / SCORE_full, "
            "averaged over the same runs (negative: early exit scored higher)."
        )


# ---- assembling the report --------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_downloads():
    """No artifact download progress bar on the terminal."""
    bar = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(bar)
    os.environ[bar] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(bar, None)
        else:
            os.environ[bar] = previous


def _config_text(client: MlflowClient, sweep_run: Run) -> str:
    """The sweep's resolved config: its config.yaml artifact, else its params."""
    try:
        with _quiet_downloads(), tempfile.TemporaryDirectory() as tmp:
            return Path(client.download_artifacts(sweep_run.info.run_id, schema.ARTIFACT_CONFIG, tmp)).read_text()
    except Exception:  # noqa: BLE001 - no artifact: fall back to the params
        params = sweep_run.data.params
        return "\n".join(f"{k}: {params[k]}" for k in sorted(params)) or "(the sweep run logged no config)"


def _per_video(client: MlflowClient, run_id: str, folder: str) -> dict[str, dict[str, float]] | None:
    """A trial's per_video_scores.csv as {video: {metric: value}} (None when it has none)."""
    import csv

    try:
        path = client.download_artifacts(run_id, schema.ARTIFACT_PER_VIDEO, folder)
    except Exception:  # noqa: BLE001 - no such artifact (older runs, hand-made stores): no bootstrap for it
        return None
    out = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for line in csv.DictReader(fh):
            out[line["video_id"]] = {k: float(v) for k, v in line.items() if k not in ("video_id", "caption") and v}
    return out


def _add_per_video(client: MlflowClient, trials: list[Trial]) -> None:
    with _quiet_downloads(), tempfile.TemporaryDirectory() as tmp:
        for t in trials:
            t.per_video = _per_video(client, t.run_id, tempfile.mkdtemp(dir=tmp))


def _tune_note(sweep_run: Run) -> str | None:
    """What the tuned rows' search was, from the sweep's params (None: no tune section)."""
    p = sweep_run.data.params
    if "tune.num_samples" not in p:
        return None
    from avkd.sweep.tune import CAPTION_ONLY_PARAMS, STUDENT_PARAMS

    return (
        f"(tuned): the row's settings are the best of {p['tune.num_samples']} Optuna (TPE, seed "
        f"{p.get('tune.seed', '?')}) trials of its cell, ranked on the validation split's "
        f"{p.get('training.val_metric', '?')} (never on test) and re-run for every seed. Students searched "
        f"{', '.join(STUDENT_PARAMS)}; the teacher and the blind baseline had the same budget over "
        f"{', '.join(CAPTION_ONLY_PARAMS)} (the only tuned setting they have). Students learn from the tuned teacher."
    )


def _bootstrap_samples(sweep_run: Run) -> int:
    try:
        return int(sweep_run.data.params.get("grid.bootstrap_samples", S.BOOTSTRAP_SAMPLES))
    except ValueError:
        return S.BOOTSTRAP_SAMPLES


def load_report(
    uri: str, experiment: str | None = None, sweep_run_id: str | None = None, paper: bool = False
) -> Report:
    """Read everything the report needs from MLflow."""
    client = open_store(uri)
    sweep_run = find_sweep_run(client, uri, experiment, sweep_run_id)
    exp_id = sweep_run.info.experiment_id
    exp_name = client.get_experiment(exp_id).name
    runs = mt.search_all_runs(client, exp_id)
    trials, missing, notes = select_trials(runs, sweep_run)
    _add_per_video(client, trials)
    if not trials:
        raise AvkdError(
            f"experiment {exp_name!r}: no FINISHED teacher/student/blind runs for sweep run "
            f"{sweep_run.info.run_id}" + (f" ({len(missing)} trials did not finish)" if missing else "")
        )
    ended = sweep_run.info.end_time if sweep_run.info.status != "RUNNING" else None
    timing = [
        r
        for r in runs
        if r.data.tags.get(schema.ROLE) == "timing"
        and r.info.status == "FINISHED"
        and (ended is None or (r.info.start_time or 0) <= ended)
    ]
    timing.sort(key=lambda r: r.info.start_time or 0)
    table1 = build_table1(trials, missing, notes, _bootstrap_samples(sweep_run), _tune_note(sweep_run))
    config_text = _config_text(client, sweep_run)  # where the run shown differs from the paper (reports/deviations.py)
    table1.notes += deviations.deviation_notes(deviations.parse_config(config_text), sweep_run.data.tags, table1.terms)
    table2 = build_table2(timing[-1], mt.timing_values(client, timing[-1])) if timing else None
    if table2 is not None:
        add_decoding(table2, table1)
    return Report(
        uri=uri,
        experiment_id=exp_id,
        experiment_name=exp_name,
        sweep_run=sweep_run,
        sweep_name=sweep_run.data.tags.get(schema.SWEEP) or exp_name,
        table1=table1,
        table2=table2,
        config_text=config_text,
        paper=paper,
    )


def _resolve_out(out: str | Path) -> Path:
    out = Path(out)
    return out if out.is_absolute() else mt.REPO_ROOT / out


def build_report(
    uri: str | None = None,
    experiment: str | None = None,
    sweep_run_id: str | None = None,
    out: str | Path = "reports/out",
    paper: bool = False,
    show: bool = True,
) -> Path:
    """Write tables, figures and index.html to <out>/<sweep name>/ and return the index.html path.

    `show` also prints the tables to the terminal.
    """
    report = load_report(mt.resolve_tracking_uri(uri), experiment, sweep_run_id, paper)
    return write_report(report, out, show)


def write_report(report: Report, out: str | Path = "reports/out", show: bool = True) -> Path:
    """Write an already loaded report (tables, figures, summary.json, index.html); returns index.html."""
    import json

    from reports import figures, render  # matplotlib is only needed here

    folder = _resolve_out(out) / (re.sub(r"[/\\\x00]", "_", report.sweep_name).lstrip(".") or "sweep")
    folder.mkdir(parents=True, exist_ok=True)
    render.write_tables(report, folder)
    (folder / schema.ARTIFACT_SUMMARY).write_text(json.dumps(report.table1.summary, indent=1), encoding="utf-8")
    figs = figures.write_figures(report, folder)
    index = folder / "index.html"
    index.write_text(render.html_page(report, figs), encoding="utf-8")
    if show:
        render.print_tables(report)
        print(f"report: {index}")
    return index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python reports/build.py", description=__doc__.split("\n")[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument("--experiment", help="MLflow experiment (the sweep name); default: the latest sweep anywhere")
    which.add_argument("--sweep-run", help="run id of the sweep (parent) run to report on")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db")
    p.add_argument("--out", default="reports/out", help="output folder (default: reports/out)")
    p.add_argument("--paper", action="store_true", help="add the paper's published Table I / II values")
    args = p.parse_args(argv)
    try:
        build_report(args.tracking_uri, args.experiment, args.sweep_run, args.out, args.paper)
    except AvkdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
