"""The MLflow schema: a contract between the sweep driver, the report builder and users' own queries.

Experiment: one per sweep name. Runs: one parent run per sweep, continued by reruns (tag `avkd.role=sweep`),
one nested child run per trial (tag `mlflow.parentRunId` = the parent's run id).
Every tag, metric and artifact name lives here and only here; the core (data, features, models,
training, evaluation) may import this module (it imports nothing of the project).
"""
import re

# ---- tags -------------------------------------------------------------------------------------
ROLE = "avkd.role"  # one of ROLES
ROLES = ("sweep", "teacher", "student", "blind", "timing", "tune", "guide")  # guide: extra teachers / mentors of a method
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
TUNED = "avkd.tuned"  # "true" on a trial whose settings came from an Optuna search (its best, re-run)
FAILED_TRIALS = "avkd.failed_trials"  # sweep run: comma-separated names of the trials that failed
SWEEP_HASH = "avkd.sweep_hash"  # sweep run: hash of the resolved sweep config; a rerun continues this run
OWNER = "avkd.owner"  # sweep run: the driver holding it, "host:pid:process start ticks" (avkd/sweep/lock.py)
HEARTBEAT = "avkd.heartbeat"  # sweep run: unix time of its driver's last heartbeat
INTERRUPTED = "avkd.interrupted"  # sweep run: the signal that stopped it (SIGINT, SIGTERM)
PARENT = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"

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
VAL_PREFIX = "val/"  # per-epoch validation curves: val/cider, val/bleu_4, ...
TRAIN_PREFIX = "train/"  # per-epoch training curves: train/loss, train/ce, train/rep_l1, ...
TRIAL_TIME_S = "trial_time_s"  # Ray Tune result of a trial: its wall time
SWEEP_FEATURES_S = "time/features_s"  # sweep run: feature extraction wall time
SWEEP_TRIALS_S = "time/trials_s"  # sweep run: all trials' wall time
SWEEP_TRIAL_COUNTS = {"finished": "trials/finished", "skipped": "trials/skipped", "failed": "trials/failed",
                      "killed": "trials/killed", "not_started": "trials/not_started"}


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
    """Timing-run metric names: time/teacher_s, time/k0.2_s, time/k0.2_std_s, time/e2e_k0.2_s ..."""
    name = "teacher" if k is None or float(k) >= 1.0 else f"k{float(k):g}"
    return f"time/{'e2e_' if end_to_end else ''}{name}{'_std' if std else ''}_s"


def parse_time_metric(key: str) -> tuple[float, bool, bool] | None:
    """time/e2e_k0.2_std_s -> (0.2, end_to_end=True, std=True); teacher -> k 1.0 (inverse of time_metric)."""
    if not (key.startswith("time/") and key.endswith("_s")):
        return None
    name = key[len("time/"):-len("_s")]
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
    "bench.videos", "bench.threads", "bench.device", "bench.image_size")  # from the benchmark's result
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
ARTIFACT_OUTCOME = "outcome.json"  # sweep run: finished / skipped / failed / not-run trials
