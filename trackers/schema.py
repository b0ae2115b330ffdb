"""The MLflow schema: a contract between the sweep driver, the report builder and users' own queries.

Experiment: one per sweep name. Runs: one parent run per sweep invocation (tag `avkd.role=sweep`),
one nested child run per trial (tag `mlflow.parentRunId` = the parent's run id).
"""

# ---- tags -------------------------------------------------------------------------------------
ROLE = "avkd.role"  # one of ROLES
ROLES = ("sweep", "teacher", "student", "blind", "timing", "tune", "guide")  # guide: extra teachers / mentors of a method
K = "avkd.k"  # "1.0" for the teacher and blind baseline, "0.2" ... for students
LOSS = "avkd.loss"  # "ce" (teacher, blind) | "rep" | "rep+ce" | a method name
SEED = "avkd.seed"
CONFIG_HASH = "avkd.config_hash"  # identity of a trial: a rerun skips a hash that has a FINISHED run
SWEEP = "avkd.sweep"  # the sweep name
WEIGHTS = "avkd.weights"  # "pretrained" | "random"
DATASET_FINGERPRINT = "avkd.dataset_fingerprint"
GIT_COMMIT = "avkd.git_commit"
SCORE_METRICS = "avkd.score_metrics"  # comma-separated metrics that test/score averages
ERROR = "avkd.error"  # FAILED runs: "<ExceptionType>: <first line of the message>" (full text in traceback.txt)
TRIAL_ROLES = ("teacher", "student", "blind")  # the runs Table I is built from
GUIDE = "avkd.guide"  # guide trials: which guide (e.g. audio-k1, mentor-k0.9)
TUNED = "avkd.tuned"  # "true" on a trial whose settings came from an Optuna search (its best, re-run)
FAILED_TRIALS = "avkd.failed_trials"  # sweep run: comma-separated names of the trials that failed
PARENT = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"

# ---- metrics ----------------------------------------------------------------------------------
TEST_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "spice")
TEST_PREFIX = "test/"  # test/bleu_1 ... test/spice (absent when unavailable), test/score
TEST_SCORE = "test/score"
VAL_PREFIX = "val/"  # per-epoch validation curves: val/cider, val/bleu_4, ...
TRAIN_PREFIX = "train/"  # per-epoch training curves: train/loss, train/ce, train/rep_l1, ...


def time_metric(k: float | None, end_to_end: bool = False, std: bool = False) -> str:
    """Timing-run metric names: time/teacher_s, time/k0.2_s, time/k0.2_std_s, time/e2e_k0.2_s ..."""
    name = "teacher" if k is None or float(k) >= 1.0 else f"k{float(k):g}"
    return f"time/{'e2e_' if end_to_end else ''}{name}{'_std' if std else ''}_s"


# ---- artifacts --------------------------------------------------------------------------------
ARTIFACT_CONFIG = "config.yaml"  # the resolved config of the run
ARTIFACT_CHECKPOINT = "checkpoint/best.pt"
ARTIFACT_CAPTIONS = "test_captions.json"  # [{"video_id", "caption"}]
ARTIFACT_PER_VIDEO = "per_video_scores.csv"
ARTIFACT_EXTRACTION_ERRORS = "extraction_errors.json"  # per-video records of feature extraction failures
ARTIFACT_TRACEBACK = "traceback.txt"  # for FAILED trials
ARTIFACT_TIMING = "timing.json"
