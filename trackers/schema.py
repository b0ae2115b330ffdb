"""The MLflow schema: a contract between the sweep driver, the report builder and users' own queries.

Experiment: one per sweep name. Runs: one parent run per sweep, continued by reruns (tag `avkd.role=sweep`),
one nested child run per trial (tag `mlflow.parentRunId` = the parent's run id).
Every tag, metric and artifact name lives here and only here; the core (data, features, models,
training, evaluation) may import this module (it imports nothing of the project).
"""

import re

# ---- tags -------------------------------------------------------------------------------------
ROLE = "avkd.role"  # one of ROLES
ROLES = (
    "sweep",
    "teacher",
    "student",
    "blind",
    "timing",
    "tune",
    "guide",
)  # guide: extra teachers / mentors of a method
K = "avkd.k"  # "1.0" for the teacher and blind baseline, "0.2" ... for students
LOSS = "avkd.loss"  # "ce" (teacher, blind) | "rep" | "rep+ce" | a method name
SEED = "avkd.seed"
CONFIG_HASH = "avkd.config_hash"  # identity of a trial: a rerun skips a hash that has a FINISHED run
SWEEP = "avkd.sweep"  # the sweep name
WEIGHTS = "avkd.weights"  # one of WEIGHTS_KINDS, from weights_tags()
WEIGHTS_DETAIL = "avkd.weights_detail"  # per backbone, e.g. "inception=pretrained,cnn14=random"
DATASET_FINGERPRINT = "avkd.dataset_fingerprint"
GIT_COMMIT = "avkd.git_commit"
SCORE_METRICS = "avkd.score_metrics"  # comma-separated metrics that test/score averages
ERROR = "avkd.error"  # FAILED runs: "<ExceptionType>: <first line of the message>" (full text in traceback.txt)
TRIAL_ROLES = ("teacher", "student", "blind")  # the runs Table I is built from
GUIDE = "avkd.guide"  # guide trials: which guide (e.g. audio-k1, mentor-k0.9)
MODALITY_GUIDES = ("audio", "visual")  # guide trials that are single-modality teachers: Table I's modality rows
TUNED = "avkd.tuned"  # "true" on a trial whose settings came from an Optuna search (its best, re-run)
FAILED_TRIALS = "avkd.failed_trials"  # sweep run: comma-separated names of the trials that failed
SWEEP_HASH = "avkd.sweep_hash"  # sweep run: hash of the resolved sweep config; a rerun continues this run
OWNER = "avkd.owner"  # sweep run: the driver holding it, "host:pid:process start ticks" (avkd/sweep/lock.py)
HEARTBEAT = "avkd.heartbeat"  # sweep run: unix time of its driver's last heartbeat
INTERRUPTED = "avkd.interrupted"  # sweep run: the signal that stopped it (SIGINT, SIGTERM)
PARENT = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"
OVERRIDES = "avkd.overrides"  # sweep run: the command line's key=value overrides, "; "-joined (also overrides.yaml)
# MLflow's own tags: the UI's Source, User and version columns read them (RunLogger sets them on every run).
SOURCE_NAME = "mlflow.source.name"  # the entry point, e.g. "python -m avkd sweep sweeps/demo.yaml"
SOURCE_TYPE = "mlflow.source.type"  # "LOCAL"
SOURCE_GIT_COMMIT = "mlflow.source.git.commit"  # full hash of HEAD
USER = "mlflow.user"
# Which page the MLflow UI opens an experiment on (read in mlflow/server/js, 3.17.2): the experiment's
# kind is taken from the tag mlflow.experimentKind only where the UI's workflow switch is off; in the
# OSS 3.17 build it is always on, so the kind follows the "workflow type": the URL's ?workflowType=
# (genai | machine_learning), else the browser's saved choice (localStorage "mlflow.workflowType", set
# by the GenAI / Model training switch in the top bar), else genai -> the GenAI overview (traces,
# evaluations). So every link avkd prints or writes carries workflowType=machine_learning (the classic
# runs table), and its experiments also carry the tag (what UIs with the switch off read).
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_RUNS = "custom_model_development"
UI_RUNS_QUERY = "workflowType=machine_learning"  # links: .../#/experiments/<id>/runs?<this>
# A saved runs-table view (MLflow's "share view": an experiment tag mlflow.sharedViewState.<key>, opened by
# ...?viewStateShareKey=<key>): the trial runs flat, sorted by k, with the role/k/method/seed params and
# test/score as columns. RunLogger's experiments carry it; the report and the end summary link to it.
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
TRIALS_VIEW_KEY = "avkd-trials"

# ---- params of trial runs ------------------------------------------------------------------------
# A trial logs what makes it differ from the sweep's other trials (MLflow's compare view, "show diff
# only" and parallel coordinates work on params, not tags): these, its tuning overrides as
# tune.<name>, and every config value that differs from the sweep's. The full resolved config is the
# run's config.yaml artifact and the parent run's params.
PARAM_ROLE, PARAM_K, PARAM_METHOD, PARAM_SEED, PARAM_TUNED = "role", "k", "method", "seed", "tuned"
PARAM_GUIDE = "guide"
TUNE_PARAM_PREFIX = "tune."

# ---- metrics ----------------------------------------------------------------------------------
# Caption metrics: each name once; the tuples below only order them.
BLEU = ("bleu_1", "bleu_2", "bleu_3", "bleu_4")
METEOR, ROUGE_L, CIDER, SPICE = "meteor", "rouge_l", "cider", "spice"
TEST_METRICS = (*BLEU, METEOR, ROUGE_L, CIDER, SPICE)  # COCO order: what test/ logs and `avkd evaluate` prints
TABLE1_METRICS = (*BLEU, CIDER, METEOR, ROUGE_L, SPICE)  # the paper's Table I column order
SCORE = "score"  # the paper's SCORE (avkd/evaluation/score.py): test/score, ee/t0.9/score
DECODE_S_PER_VIDEO = "decode_s_per_video"  # beam-search seconds per test video: test/..., ee/t<t>/...

TEST_PREFIX = "test/"  # test/bleu_1 ... test/spice (absent when unavailable), test/score
TEST_SCORE = TEST_PREFIX + SCORE
# Grounded attribute accuracy (avkd/evaluation/attributes.py) per group: test/attr/visual_static, ...
# (only on datasets that store attributes; per video in per_video_scores.csv as attr/<group>).
ATTR_PREFIX = "attr/"
TEST_ATTR_PREFIX = TEST_PREFIX + ATTR_PREFIX
VAL_PREFIX = "val/"  # per-epoch validation curves: val/cider, val/bleu_4, ...
TRAIN_PREFIX = "train/"  # per-epoch training curves: train/loss, train/ce, train/rep_l1, ...
# Multi-stage methods (rep: mapper, then decoder) log each stage's curves apart: train/stage1/loss,
# train/stage2/loss ... (see train_stage_metric), so one curve never jumps between two objectives.

# Durations: every one under the group time/, named time/<phase>_s (phase_time_metric); `speed`'s
# per-phase profiling metrics follow the same scheme (time/decode_frames_s, time/forward_s, ...).
TIME_PREFIX = "time/"
TRIAL_TIME_S = "time/trial_s"  # a trial's wall time (also its Ray Tune result key)
EPOCH_S = "time/epoch_s"  # per-epoch training wall time (a series over epochs)
DECODE_S = "time/decode_s"  # wall time of decoding the whole test split
SWEEP_FEATURES_S = "time/features_s"  # sweep run: feature extraction wall time
SWEEP_TIMING_S = "time/timing_s"  # sweep run: the Table II benchmark's wall time
SWEEP_TRIALS_S = "time/trials_s"  # sweep run: all trials' wall time
# Counts are not series: the sweep run carries them as tags.
SWEEP_TRIAL_COUNTS = {
    "finished": "avkd.trials.finished",
    "skipped": "avkd.trials.skipped",
    "failed": "avkd.trials.failed",
    "killed": "avkd.trials.killed",
    "not_started": "avkd.trials.not_started",
}

# Table II timing run: one metric per quantity, plotted against k through the step = the percentage of
# frames the variant keeps (k 0.2 -> step 20, the teacher -> step 100); never k inside the name.
TIMING_EXTRACT_S = "time/extract_s"  # feature extraction seconds per video (mean over the timed videos)
TIMING_EXTRACT_STD_S = "time/extract_std_s"
TIMING_E2E_S = "time/e2e_s"  # decoding the file + extraction, seconds per video
TIMING_E2E_STD_S = "time/e2e_std_s"
# CPU seconds (all threads of the process) of the same end-to-end work: steadier than wall time on a
# shared machine (features.bench's e2e_cpu_mean_s); not part of TIMING_METRICS' (end_to_end, std) pairs.
TIMING_E2E_CPU_S = "time/e2e_cpu_s"
TIMING_METRICS = {  # (end_to_end, std) -> name
    (False, False): TIMING_EXTRACT_S,
    (False, True): TIMING_EXTRACT_STD_S,
    (True, False): TIMING_E2E_S,
    (True, True): TIMING_E2E_STD_S,
}


def train_stage_metric(stage: int, key: str) -> str:
    """train/loss of stage 2 -> train/stage2/loss; keys outside train/ are returned as they are."""
    if not key.startswith(TRAIN_PREFIX):
        return key
    return f"{TRAIN_PREFIX}stage{stage}/{key[len(TRAIN_PREFIX) :]}"


def timing_step(k: float) -> int:
    """The step of a Table II variant: the percentage of frames it keeps (k 0.2 -> 20, teacher -> 100)."""
    return int(round(100 * min(float(k), 1.0)))


def timing_step_k(step: int) -> float:
    """Inverse of timing_step: 20 -> 0.2."""
    return step / 100.0


def phase_time_metric(phase: str) -> str:
    """Seconds a sweep or trial spent in one phase: time/features_s, time/validation_s, time/total_s ...

    Characters MLflow refuses in names (e.g. the `+` of rep+ce) become `_`. Phase names never read as
    a Table II name (time/teacher_s, time/k0.2_s: see parse_time_metric)."""
    return f"time/{re.sub(r'[^A-Za-z0-9_.-]', '_', phase)}_s"


_EARLY_EXIT = re.compile(r"ee/t([0-9.]+)/(.+)")


def early_exit_metric(threshold: float, name: str) -> str:
    """An early-exit evaluation's metric: ee/t0.9/score, ee/t0.9/decode_s_per_video, ..."""
    return f"ee/t{threshold:g}/{name}"


def parse_early_exit_metric(key: str) -> tuple[float, str] | None:
    """ee/t0.9/score -> (0.9, "score"); None for any other key (inverse of early_exit_metric)."""
    m = _EARLY_EXIT.fullmatch(key)
    if m is None:
        return None
    try:
        return float(m.group(1)), m.group(2)
    except ValueError:
        return None


def time_metric(k: float | None, end_to_end: bool = False, std: bool = False) -> str:
    """LEGACY timing-run names (k inside the name): time/teacher_s, time/k0.2_s, time/e2e_k0.2_std_s ...

    Timing runs now log TIMING_METRICS with step = timing_step(k); this pair stays so that reports can
    still read timing runs logged before the change."""
    name = "teacher" if k is None or float(k) >= 1.0 else f"k{float(k):g}"
    return f"time/{'e2e_' if end_to_end else ''}{name}{'_std' if std else ''}_s"


def parse_time_metric(key: str) -> tuple[float, bool, bool] | None:
    """time/e2e_k0.2_std_s -> (0.2, end_to_end=True, std=True); teacher -> k 1.0 (inverse of time_metric)."""
    if key in TIMING_METRICS.values():
        return None  # a current (per-step) timing metric, not a legacy one
    if not (key.startswith("time/") and key.endswith("_s")):
        return None
    name = key[len("time/") : -len("_s")]
    e2e = name.startswith("e2e_")
    name = name[4:] if e2e else name
    std = name.endswith("_std")
    name = name[:-4] if std else name
    if name == "teacher":
        return 1.0, e2e, std
    try:
        return (float(name[1:]), e2e, std) if name.startswith("k") else None
    except ValueError:
        return None


# ---- params of timing runs (besides the flattened config) ---------------------------------------
BENCH_VIDEOS, BENCH_THREADS, BENCH_DEVICE, BENCH_IMAGE_SIZE = (
    "bench.videos",
    "bench.threads",
    "bench.device",
    "bench.image_size",
)  # from the benchmark's result
BENCH_WEIGHTS_FINGERPRINT = "bench.weights_fingerprint"


# ---- the weights tags -------------------------------------------------------------------------
WEIGHTS_KINDS = ("pretrained", "random", "mixed")


def weights_tags(weights: dict) -> dict[str, str]:
    """{avkd.weights, avkd.weights_detail} for the backbones' weight status, whatever backbones there are.

    `weights` maps backbone -> "pretrained" | "random" (e.g. inception + cnn14, or inception + cnn10);
    other keys (the "fingerprint") are ignored. avkd.weights is "pretrained" only when every backbone
    is, "random" when every one is, else "mixed"; avkd.weights_detail names each backbone's status.
    """
    status = {name: str(v) for name, v in weights.items() if name != "fingerprint"}
    if not status:
        raise ValueError("weights: no backbone status (expected e.g. {'inception': 'pretrained', ...})")
    kinds = set(status.values())
    summary = kinds.pop() if len(kinds) == 1 and kinds <= {"pretrained", "random"} else "mixed"
    return {WEIGHTS: summary, WEIGHTS_DETAIL: ",".join(f"{n}={v}" for n, v in status.items())}


# ---- artifacts --------------------------------------------------------------------------------
ARTIFACT_CONFIG = "config.yaml"  # the resolved config of the run
ARTIFACT_CHECKPOINT = "checkpoint/best.pt"
ARTIFACT_CAPTIONS = "test_captions.json"  # [{"video_id", "caption"}]
ARTIFACT_PER_VIDEO = "per_video_scores.csv"
ARTIFACT_EXTRACTION_ERRORS = "extraction_errors.json"  # per-video records of feature extraction failures
ARTIFACT_TRACEBACK = "traceback.txt"  # for FAILED trials
ARTIFACT_TIMING = "timing.json"  # timing runs: the whole benchmark result
ARTIFACT_SWEEP_FILE = "sweep.yaml"  # sweep run: the sweep file as written
ARTIFACT_DATASET_ISSUES = "dataset_issues.json"  # sweep run: annotation problems the loader skipped
ARTIFACT_SUMMARY = (
    "summary.json"  # sweep run: Table I's intervals, Diff bootstrap, attribute accuracy (score.summarize)
)
ARTIFACT_OVERRIDES = "overrides.yaml"  # sweep run: the command line's overrides, as a mapping
ARTIFACT_OUTCOME = "outcome.json"  # sweep run: finished / skipped / failed / not-run trials
