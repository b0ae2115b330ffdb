"""What a report is: the runs read from MLflow and the tables built from them.

build.py fills these; render.py and figures.py only read them (build -> render/figures -> model: no
import circle). No MLflow here beyond the sweep run object the report carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from avkd.evaluation.score import BLEU_TERM, TERMS
from trackers import schema

if TYPE_CHECKING:  # the renderers need no MLflow import
    from mlflow.entities import Run

COLUMNS = (*schema.TABLE1_METRICS, schema.SCORE)  # Table I's metric columns, the paper's order
LABELS = {
    "bleu_1": "BLEU-1",
    "bleu_2": "BLEU-2",
    "bleu_3": "BLEU-3",
    "bleu_4": "BLEU-4",
    schema.CIDER: "CIDEr",
    schema.METEOR: "METEOR",
    schema.ROUGE_L: "ROUGE-L",
    schema.SPICE: "SPICE",
    schema.SCORE: "SCORE",
    BLEU_TERM: "mean(BLEU-1..4)",
}
assert set(LABELS) == {*COLUMNS, *TERMS}, "a metric without a label"
UI_URL = "http://127.0.0.1:5000"  # where `make ui` serves the MLflow UI


@dataclass
class Trial:
    """One teacher/student/blind run."""

    run_id: str
    role: str
    loss: str
    k: float
    seed: str
    config_hash: str
    status: str
    start_time: int
    parent: str | None
    metrics: dict[str, float]  # test metrics without the "test/" prefix
    error: str = ""
    early_exit: dict[float, dict[str, float]] = field(default_factory=dict)  # threshold -> ee/t<t>/ metrics
    guide: str = ""  # modality rows: the single-modality teacher ("audio" | "visual")
    tuned: bool = False  # its settings are the best of an Optuna search (avkd.tuned)
    per_video: dict[str, dict[str, float]] | None = None  # per_video_scores.csv: {video: metrics}


@dataclass
class Row:
    """One line of Table I: a (role, loss, k) cell, over seeds."""

    role: str
    loss: str
    k: float
    guide: str = ""  # modality rows: "audio" | "visual"
    trials: list[Trial] = field(default_factory=list)  # FINISHED runs, one per seed
    missing: list[Trial] = field(default_factory=list)  # trials of the sweep with no FINISHED run
    mean: dict[str, float | None] = field(default_factory=dict)  # COLUMNS
    std: dict[str, float | None] = field(default_factory=dict)  # None when n < 2
    half: dict[str, float | None] = field(default_factory=dict)  # 95 % t-interval half-width; None when n < 2
    diff_pct: float | None = None
    diff_ci: tuple[float, float] | None = None  # Diff's 95 % paired-bootstrap interval (%), over test videos
    distinguishable: bool | None = None  # False: the interval contains 0 (not distinguishable from the teacher)
    attributes: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # group -> (mean, half-width)
    decode_s: float | None = None  # mean decoding seconds per test video (full decoder)
    early_exit: list[tuple[float, float, float]] = field(default_factory=list)  # (threshold, decode s/video, SCORE)

    @property
    def label(self) -> str:
        tuned = " (tuned)" if self.tuned else ""
        if self.role == "teacher":
            return "Teacher" + tuned
        if self.role == "blind":
            return "Blind baseline †" + tuned
        if self.role == "guide":
            return f"{self.guide.capitalize()}-only teacher ‡"
        name = {"rep": "L_rep", "rep+ce": "L_rep + L_CE"}.get(self.loss, self.loss)
        return f"{name} student (k = {self.k:g}){tuned}"

    @property
    def tuned(self) -> bool:
        return any(t.tuned for t in self.trials)

    @property
    def key(self) -> str:
        """The row's name in the summary artifact: teacher, blind, modality-audio, student-k0.2-rep+ce."""
        if self.role in ("teacher", "blind"):
            return self.role
        if self.role == "guide":
            return f"modality-{self.guide}"
        return f"student-k{self.k:g}-{self.loss}"

    @property
    def n(self) -> int:
        return len(self.trials)


@dataclass
class Table1:
    rows: list[Row]
    terms: list[str]  # what SCORE averages here
    best: dict[str, float]  # column -> best mean at 3 decimals (bold)
    notes: list[str]
    summary: dict = field(default_factory=dict)  # avkd.evaluation.score.summarize: what summary.json holds
    attribute_groups: list[str] = field(default_factory=list)  # attribute accuracy columns (none on MSR-VTT)


@dataclass
class TimingRow:
    k: float  # 1.0 = teacher
    extract_mean: float
    extract_std: float | None
    e2e_mean: float | None
    e2e_std: float | None
    extract_reduction: float | None = None  # % vs the teacher
    e2e_reduction: float | None = None
    decode_mean: float | None = None  # decoding s/video, mean over the Table I runs at this k
    early_exit: dict[float, tuple[float, float]] = field(
        default_factory=dict
    )  # threshold -> (decode s/video, SCORE drop %)

    @property
    def label(self) -> str:
        return "Teacher" if self.k >= 1.0 else f"Student (k = {self.k:g})"


@dataclass
class Table2:
    run_id: str
    rows: list[TimingRow]
    caption: str
    notes: list[str]
    thresholds: list[float] = field(default_factory=list)  # early-exit thresholds with decoding columns


@dataclass
class Report:
    uri: str
    experiment_id: str
    experiment_name: str
    sweep_run: Run
    sweep_name: str
    table1: Table1
    table2: Table2 | None
    config_text: str
    paper: bool
    ui_url: str = UI_URL

    def run_link(self, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{self.experiment_id}/runs/{run_id}"
