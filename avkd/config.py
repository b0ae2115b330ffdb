"""The sweep file: one YAML describes one whole study.

The schema is the dataclasses below (their defaults are the documented defaults). `load_sweep`
validates a file against them before any work starts: an unknown key, a wrong type, an
out-of-range value or a YAML syntax error raises `ConfigError` with one line naming the file
and the key (e.g. `sweeps/x.yaml: grid.ks[2]: 1.5 is outside (0, 1]`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from avkd.errors import ConfigError


@dataclass
class SynthSpec:
    videos: int = 180
    seed: int = 0


@dataclass
class DatasetConfig:
    kind: Literal["synth", "msrvtt"] = "synth"
    root: str = "data/synth"  # relative paths are relative to the repo root (the working directory)
    synth: SynthSpec = field(default_factory=SynthSpec)  # used when kind == synth and root is missing
    min_count: int = 2  # vocabulary: words seen fewer times in the training split become <unk>
    max_caption_len: int = 20  # training captions are cut to this many words (+ <eos>)
    max_videos: Optional[int] = None  # per split; for quick looks at a large dataset


# The audio backbones and the time pooling before their fc1: names used by the schema below and by
# avkd.features (weights, cache keys, Table II labels).
AudioModel = Literal["cnn10", "cnn14"]
AUDIO_MODELS: tuple[str, ...] = typing.get_args(AudioModel)
AudioTimePool = Literal["panns", "mean"]


@dataclass
class WeightsConfig:
    require_pretrained: bool = False  # True: a missing checkpoint is an error, never random weights
    inception: Optional[str] = None  # path to inception_v3_google-0cc3c7bd.pth (else looked for in the usual places)
    cnn10: Optional[str] = None  # path to Cnn10_mAP=0.380.pth (else looked for in the usual places)
    cnn14: Optional[str] = None  # path to Cnn14_mAP=0.431.pth (else looked for in the usual places)
    seed: int = 0  # seed of the random weights used when no checkpoint is found


@dataclass
class FeatureConfig:
    image_size: int = 299  # frames are resized to image_size x image_size (paper: 299)
    max_frames: Optional[int] = None  # cap on the teacher's frames per video (None = every frame, as the paper)
    sample_rate: int = 32000
    audio_pool: Literal["spectral", "avg", "max", "uniform"] = "spectral"  # SimPF method
    # spectral only: rescale the pooled spectrogram by sqrt(n/T) so that each mel bin's mean over time
    # is preserved (the reference does not; its output is sqrt(T/n) ~ 1/sqrt(k) times the input's scale)
    simpf_renorm: bool = False
    audio_model: AudioModel = "cnn14"  # PANNs backbone: cnn10 (512-d, the paper's) or cnn14 (2048-d)
    # over time before fc1: "panns" = PANNs' own max + mean, "mean" = the paper's mean operator
    audio_time_pool: AudioTimePool = "panns"
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_frames: int = 64  # frames per Inception-v3 forward
    batch_audio: int = 8  # clips per audio-backbone forward
    workers: int = 2  # decoding threads running ahead of the model
    cache_dir: str = "cache/features"
    # Ray tasks the videos are split over (each one GPU, or one CPU on a GPU-less cluster), all writing
    # the shared cache. 0 = automatic: sharded (one per GPU, else per CPU) only when Ray is already
    # initialised (e.g. the driver joined the cluster at RAY_ADDRESS); 1 = never sharded.
    shards: int = 0


@dataclass
class EarlyExitConfig:
    """Confidence-threshold early exit: an exit head after every GRU layer but the last, trained jointly.

    Inspired by DEEVISum's EE, but NOT its criterion: a decoding step stops at the first exit head
    whose top word probability exceeds the threshold (CALM-style confidence), where DEEVISum compares
    hidden states with class prototypes by cosine similarity (threshold 0.8); see the README.
    """

    enabled: bool = False
    # Confidence thresholds evaluated on the test split (1.0: never exits, the full decoder).
    thresholds: list[float] = field(default_factory=lambda: [0.9, 0.7, 0.5])
    weight: float = 1.0  # weight of the exit heads' mean caption loss (added to every decoder-training stage)


@dataclass
class ModelConfig:
    embed_dim: int = 256
    hidden: int = 512  # GRU hidden size (paper: 2576)
    layers: int = 2  # stacked GRU layers, residual connections between them
    dropout: float = 0.3
    early_exit: EarlyExitConfig = field(default_factory=EarlyExitConfig)


@dataclass
class TrainingConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    patience: int = 5  # early stopping on the validation metric
    val_metric: Literal["cider", "bleu_4"] = "cider"
    # Caption pairs per epoch: None = every reference caption of every train video; n = a fresh random
    # n of each video's captions every epoch (as many captioning codebases do: epochs get cheaper,
    # every caption is still seen over the epochs)
    captions_per_video: Optional[int] = None


@dataclass
class LossTerm:
    name: str
    weight: float = 1.0


@dataclass
class MLPConfig:
    hidden: list[int] = field(default_factory=lambda: [1024, 1024])  # two hidden layers, as the paper
    activation: Literal["relu", "gelu", "tanh"] = "relu"
    dropout: float = 0.1


@dataclass
class ExtraTeacher:
    """A teacher beside the audio-visual one (multi_teacher): trained with L_CE like it, on its own inputs."""

    modality: Literal["av", "audio", "visual"] = "av"  # audio / visual: the other modality's latent is zeroed
    k: float = 1.0  # fraction of frames of its features (1.0: every frame; < 1: a teacher at a lower frame rate)

    @property
    def name(self) -> str:
        """ "audio", "visual", "av@0.6", "audio@0.6" ...: the guide's name in runs and metrics."""
        return self.modality if self.k == 1.0 else f"{self.modality}@{self.k:g}"


@dataclass
class FusedToModalConfig:
    """VQAKD (Shao et al. 2023): the teacher's fused latent supervises each student modality branch."""

    temperature: float = 1.0  # the released code's T of modal_kl


@dataclass
class MultiTeacherConfig:
    """EMTM (Liang et al. 2023): several teachers' outputs aggregated per sample into one target."""

    teachers: list[ExtraTeacher] = field(
        default_factory=lambda: [ExtraTeacher("audio"), ExtraTeacher("visual")]
    )  # besides the AV teacher
    # The student shares its encoder (the decoder's two latent projections) with this teacher, frozen:
    # "teacher" (the AV teacher) or an extra teacher's name; null: the student trains its own.
    share_encoder_with: Optional[str] = None
    temperature: float = 1.0  # the released code's T of the KL to the ensemble (kd_aggregate)


@dataclass
class MultiStageConfig:
    """DEEVISum's MSKD: teacher -> mentor (a student at a larger k) -> student, learning from both."""

    mentor_k: float = 0.9  # must be larger than every k the multi_stage students run at (the paper's go to 0.8)
    # The mentor's own training (DEEVISum's released code: its LM loss + 0.5 * T^2 KL to the teacher).
    mentor_losses: list[LossTerm] = field(default_factory=lambda: [LossTerm("ce", 1.0), LossTerm("kd_teacher", 0.5)])
    # Initial weights (teacher, mentor) of the learned-weights option (kd_aggregate + aggregate_ce in
    # distill.losses.multi_stage; DEEVISum's init 0.25, 0.5); normalised.
    aggregate_init: list[float] = field(default_factory=lambda: [0.25, 0.5])
    temperature: float = 2.0  # DEEVISum's T of every KL (kd_teacher, kd_mentor, kd_aggregate)


@dataclass
class MethodsConfig:
    """Settings of the distillation methods (avkd/methods/), by the method's key."""

    fused_to_modal: FusedToModalConfig = field(default_factory=FusedToModalConfig)
    multi_teacher: MultiTeacherConfig = field(default_factory=MultiTeacherConfig)
    multi_stage: MultiStageConfig = field(default_factory=MultiStageConfig)


# A method key with this suffix (rep-scratch, rep+ce-scratch) trains its student decoder from scratch
# whatever distill.init_from_teacher says: the ablation of that setting (avkd/methods/scratch.py).
SCRATCH_SUFFIX = "-scratch"


@dataclass
class DistillConfig:
    mlp: MLPConfig = field(default_factory=MLPConfig)
    # The student decoder starts from the trained teacher decoder: the student's MLP output lives in
    # the teacher's latent space, so the teacher's decoder is the natural starting point.
    init_from_teacher: bool = True
    rep_epochs: int = 30  # stage 1 of `rep`: epochs of L_rep alone for the MLP
    # Loss terms per method (keys: avkd/methods/; term names: avkd.training.losses.LOSSES).
    # Each method's default is its paper's released code (see the module of the method).
    losses: dict[str, list[LossTerm]] = field(
        default_factory=lambda: {
            "rep": [LossTerm("rep_l1", 1.0)],
            "rep+ce": [LossTerm("ce", 1.0), LossTerm("rep_l1", 1.0)],
            # the init_from_teacher ablation: the same terms, the student decoder trained from scratch
            "rep-scratch": [LossTerm("rep_l1", 1.0)],
            "rep+ce-scratch": [LossTerm("ce", 1.0), LossTerm("rep_l1", 1.0)],
            # VQAKD: task CE + KL(teacher fused || branch) per branch, T = 1, no T^2
            "fused_to_modal": [LossTerm("ce", 1.0), LossTerm("modal_kl", 1.0)],
            # EMTM: task CE + 0.1 * KL to the per-sample aggregated teachers (T = 1); the weights learn by aggregate_ce
            "multi_teacher": [LossTerm("ce", 1.0), LossTerm("kd_aggregate", 0.1), LossTerm("aggregate_ce", 1.0)],
            # DEEVISum MSKD: fixed weights, T^2 KLs at T = 2 (learned option: kd_aggregate + aggregate_ce)
            "multi_stage": [LossTerm("ce", 1.0), LossTerm("kd_mentor", 0.5), LossTerm("kd_teacher", 0.25)],
        }
    )
    methods: MethodsConfig = field(default_factory=MethodsConfig)


@dataclass
class DecodingConfig:
    beam_size: int = 3
    max_len: int = 20
    length_penalty: float = 0.0


@dataclass
class EvaluationConfig:
    spice_jars: Optional[str] = None  # folder with Stanford CoreNLP 3.6.0 jars; else $AVKD_SPICE_JARS; else no SPICE


@dataclass
class TimingConfig:
    enabled: bool = True
    videos: int = 100  # seeded random sample of test videos (paper: 100)
    warmup: int = 2
    threads: int = 2
    seed: int = 0


@dataclass
class GridConfig:
    ks: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])
    losses: list[str] = field(default_factory=lambda: ["rep", "rep+ce"])
    seeds: list[int] = field(default_factory=lambda: [0])
    blind: bool = True  # also train the blind baseline (latent vectors replaced by zeros)
    # Also train an audio-only and a visual-only teacher (Table I's modality rows); the same trials as
    # multi_teacher's extra teachers "audio" and "visual", so a sweep with both trains them once.
    modality_teachers: bool = True
    bootstrap_samples: int = 1000  # Table I: resamples of the paired bootstrap of Diff over test videos
    timing: TimingConfig = field(default_factory=TimingConfig)


@dataclass
class ResourcesConfig:
    cpu: float = 1.0  # per trial
    gpu: float = 0.0  # per trial, fractional allowed
    max_concurrent_trials: int = 2
    max_failures: int = 1  # retries of a crashed trial before it is marked FAILED


@dataclass
class TuneSpace:
    mlp_hidden: list[int] = field(default_factory=lambda: [256, 512, 1024])
    mlp_dropout: list[float] = field(default_factory=lambda: [0.0, 0.5])  # [low, high]
    decoder_dropout: list[float] = field(default_factory=lambda: [0.0, 0.5])  # [low, high]
    rep_weight: list[float] = field(default_factory=lambda: [0.1, 10.0])  # [low, high], log scale


@dataclass
class TuneConfig:
    num_samples: int = 8  # Optuna trials per (k, loss) cell
    # The cells searched: these ks x these losses (None: every grid k / loss); the other cells train
    # with the sweep file's settings, as without a tune section
    ks: Optional[list[float]] = None
    losses: Optional[list[str]] = None
    metric: Literal["cider", "bleu_4"] = "cider"  # a validation metric: the test split is never used to tune
    seed: int = 0
    asha: bool = False  # early-stop bad trials with ASHA
    space: TuneSpace = field(default_factory=TuneSpace)


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db at the repo root
    experiment: Optional[str] = None  # default: the sweep name


@dataclass
class SweepConfig:
    name: str
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    tune: Optional[TuneConfig] = None
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    runs_dir: str = "runs"  # Ray trial folders and per-trial artifacts

    # ---- derived views -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Flattened resolved config (`model.hidden` -> 512), for MLflow params."""
        return flatten(self.to_dict())


# ---- validation ------------------------------------------------------------------------------


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_hash(d: dict[str, Any]) -> str:
    """Stable short hash of a (sub-)config: the identity of a trial for resume/idempotence."""
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping to {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


# Values quoted in messages are cut short: a YAML alias bomb is tiny as text but huge as a structure.
_SHORT = reprlib.Repr()  # (Python 3.11's Repr takes no keyword arguments)
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxset = 2, 6, 4, 4
_SHORT.maxstring = _SHORT.maxother = 80


def _show(value: Any) -> str:
    return _SHORT.repr(value)


def _key_name(key: Any) -> str:
    """A mapping key as messages show it: as is when plain printable text, else its repr ('' or ' x')."""
    return key if isinstance(key, str) and key and key.isprintable() and key == key.strip() else repr(key)


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp` and build dataclasses; raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {_show(value)}"[:300])
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            return _convert(value, arg, where)
        raise bad
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {_show(value)} is not one of {_type_name(tp)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise bad
        (elem,) = typing.get_args(tp)
        return [_convert(v, elem, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        _, elem = typing.get_args(tp)
        return {str(k): _convert(v, elem, f"{where}.{_key_name(k)}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):  # .nan and .inf would only surface mid-sweep, as NaN losses
            raise ConfigError(f"{where}: {_show(value)} is not a finite number")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{prefix}{_key_name(key)}: unknown key (known keys here: {known})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: required key is missing")
    return cls(**kwargs)


def _check_ranges(cfg: SweepConfig) -> None:
    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{key}: {msg}")

    # The name becomes a folder under runs_dir and the feature cache: it must not point elsewhere.
    need(
        bool(cfg.name.strip())
        and cfg.name.isprintable()
        and cfg.name not in (".", "..")
        and not any(c in cfg.name for c in "/\\"),
        "name",
        f"{_show(cfg.name)} must be a non-empty printable name without '/' or '\\' (and not '.' or '..')",
    )
    need(cfg.dataset.synth.videos >= 10, "dataset.synth.videos", "must be >= 10 (train/validate/test splits)")
    need(cfg.dataset.min_count >= 1, "dataset.min_count", "must be >= 1")
    need(cfg.dataset.max_caption_len >= 2, "dataset.max_caption_len", "must be >= 2")
    need(cfg.dataset.max_videos is None or cfg.dataset.max_videos >= 1, "dataset.max_videos", "must be >= 1")
    need(
        75 <= cfg.features.image_size <= 1024, "features.image_size", "must be in [75, 1024] (Inception-v3 needs >= 75)"
    )
    need(cfg.features.max_frames is None or cfg.features.max_frames >= 1, "features.max_frames", "must be >= 1")
    need(cfg.features.sample_rate == 32000, "features.sample_rate", "PANNs Cnn10/Cnn14 are trained at 32000 Hz")
    need(
        not cfg.features.simpf_renorm or cfg.features.audio_pool == "spectral",
        "features.simpf_renorm",
        f"only applies to audio_pool: spectral (got audio_pool: {cfg.features.audio_pool})",
    )
    for key in ("batch_frames", "batch_audio", "workers"):
        need(getattr(cfg.features, key) >= 1, f"features.{key}", "must be >= 1")
    need(0 <= cfg.features.shards <= 1024, "features.shards", "must be in [0, 1024] (0 = automatic)")
    need(
        cfg.features.device == "auto" or cfg.features.device == "cpu" or cfg.features.device.startswith("cuda"),
        "features.device",
        f"{cfg.features.device!r} is not auto, cpu, cuda or cuda:N",
    )
    for key in ("embed_dim", "hidden", "layers"):
        need(getattr(cfg.model, key) >= 1, f"model.{key}", "must be >= 1")
    need(0.0 <= cfg.model.dropout < 1.0, "model.dropout", "must be in [0, 1)")
    ee = cfg.model.early_exit
    need(
        not ee.enabled or cfg.model.layers >= 2,
        "model.early_exit.enabled",
        f"needs model.layers >= 2 (an exit head sits after every GRU layer but the last; layers is {cfg.model.layers})",
    )
    for i, t in enumerate(ee.thresholds):
        need(0.0 <= t <= 1.0, f"model.early_exit.thresholds[{i}]", f"{t} is outside [0, 1]")
    need(ee.weight >= 0, "model.early_exit.weight", "must be >= 0")
    need(cfg.training.epochs >= 1, "training.epochs", "must be >= 1")
    need(cfg.training.batch_size >= 1, "training.batch_size", "must be >= 1")
    need(cfg.training.lr > 0, "training.lr", "must be > 0")
    need(cfg.training.weight_decay >= 0, "training.weight_decay", "must be >= 0 (torch's Adam refuses negative values)")
    need(cfg.training.patience >= 1, "training.patience", "must be >= 1")
    need(
        cfg.training.captions_per_video is None or cfg.training.captions_per_video >= 1,
        "training.captions_per_video",
        "must be >= 1 (or null: every caption)",
    )
    need(
        len(cfg.distill.mlp.hidden) == 2 and all(h >= 1 for h in cfg.distill.mlp.hidden),
        "distill.mlp.hidden",
        "must be two positive layer sizes (the paper's MLP has two hidden layers)",
    )
    need(0.0 <= cfg.distill.mlp.dropout < 1.0, "distill.mlp.dropout", "must be in [0, 1)")
    need(cfg.distill.rep_epochs >= 1, "distill.rep_epochs", "must be >= 1")
    for mode, terms in cfg.distill.losses.items():
        need(bool(terms), f"distill.losses.{mode}", "needs at least one loss term")
        for i, t in enumerate(terms):
            need(t.weight >= 0, f"distill.losses.{mode}[{i}].weight", "must be >= 0")
    need(cfg.decoding.beam_size >= 1, "decoding.beam_size", "must be >= 1")
    need(cfg.decoding.max_len >= 1, "decoding.max_len", "must be >= 1")
    need(bool(cfg.grid.ks) or bool(cfg.grid.seeds), "grid", "empty grid")
    need(bool(cfg.grid.seeds), "grid.seeds", "empty: at least one seed is needed")
    need(
        cfg.grid.bootstrap_samples >= 100, "grid.bootstrap_samples", "must be >= 100 (a 95 % interval needs resamples)"
    )
    for i, k in enumerate(cfg.grid.ks):
        need(0.0 < k <= 1.0, f"grid.ks[{i}]", f"{k} is outside (0, 1]")
    need(len(set(cfg.grid.ks)) == len(cfg.grid.ks), "grid.ks", "has duplicates")
    _check_methods(cfg, need)  # after grid.ks: its checks compare k values that must be valid first
    need(not cfg.grid.ks or bool(cfg.grid.losses), "grid.losses", "empty: students need at least one loss")
    for i, loss in enumerate(cfg.grid.losses):
        need(
            loss in cfg.distill.losses,
            f"grid.losses[{i}]",
            f"{loss!r} has no entry in distill.losses (known: {', '.join(cfg.distill.losses)})",
        )
    need(cfg.grid.timing.videos >= 1, "grid.timing.videos", "must be >= 1")
    need(cfg.grid.timing.warmup >= 0, "grid.timing.warmup", "must be >= 0")
    need(cfg.grid.timing.threads >= 1, "grid.timing.threads", "must be >= 1")
    need(cfg.resources.cpu > 0, "resources.cpu", "must be > 0")
    need(cfg.resources.gpu >= 0, "resources.gpu", "must be >= 0")
    need(cfg.resources.max_concurrent_trials >= 1, "resources.max_concurrent_trials", "must be >= 1")
    need(cfg.resources.max_failures >= 0, "resources.max_failures", "must be >= 0")
    if cfg.tune is not None:
        sp = cfg.tune.space
        need(cfg.tune.num_samples >= 1, "tune.num_samples", "must be >= 1")
        for key, values, grid in (("ks", cfg.tune.ks, cfg.grid.ks), ("losses", cfg.tune.losses, cfg.grid.losses)):
            for i, v in enumerate(values or []):
                need(v in grid, f"tune.{key}[{i}]", f"{v!r} is not in grid.{key}")
        need(
            bool(sp.mlp_hidden) and all(h >= 1 for h in sp.mlp_hidden),
            "tune.space.mlp_hidden",
            "must be positive sizes",
        )
        for key in ("mlp_dropout", "decoder_dropout"):
            lo_hi = getattr(sp, key)
            need(
                len(lo_hi) == 2 and 0 <= lo_hi[0] <= lo_hi[1] < 1, f"tune.space.{key}", "must be [low, high] in [0, 1)"
            )
        need(
            len(sp.rep_weight) == 2 and 0 < sp.rep_weight[0] <= sp.rep_weight[1],
            "tune.space.rep_weight",
            "must be [low, high] with 0 < low <= high",
        )


def _check_methods(cfg: SweepConfig, need: Any) -> None:
    """distill.methods: the extra teachers and the mentor must be trainable and distinct."""
    mt, ms = cfg.distill.methods.multi_teacher, cfg.distill.methods.multi_stage
    names = [t.name for t in mt.teachers]
    for i, t in enumerate(mt.teachers):
        where = f"distill.methods.multi_teacher.teachers[{i}]"
        need(0.0 < t.k <= 1.0, f"{where}.k", f"{t.k} is outside (0, 1]")
        need(t.name != "av", where, "the audio-visual teacher at k = 1 is always included; list only the others")
        need(names.index(t.name) == i, where, f"{t.name!r} is listed twice")
    if "multi_teacher" in cfg.grid.losses:
        need(bool(mt.teachers), "distill.methods.multi_teacher.teachers", "needs at least one extra teacher")
    need(
        mt.share_encoder_with in (None, "teacher", *names),
        "distill.methods.multi_teacher.share_encoder_with",
        f"{_show(mt.share_encoder_with)} is not 'teacher' or an extra teacher ({', '.join(names) or 'none listed'})",
    )
    need(0.0 < ms.mentor_k < 1.0, "distill.methods.multi_stage.mentor_k", f"{ms.mentor_k} is outside (0, 1)")
    if "multi_stage" in cfg.grid.losses:
        too_large = [k for k in cfg.grid.ks if k >= ms.mentor_k]
        need(
            not too_large,
            "distill.methods.multi_stage.mentor_k",
            f"{ms.mentor_k:g} must be larger than every k of grid.ks that runs multi_stage "
            f"({', '.join(f'{k:g}' for k in too_large)} is not smaller)",
        )
    need(bool(ms.mentor_losses), "distill.methods.multi_stage.mentor_losses", "needs at least one loss term")
    for i, t in enumerate(ms.mentor_losses):
        need(t.weight >= 0, f"distill.methods.multi_stage.mentor_losses[{i}].weight", "must be >= 0")
    for key in ("fused_to_modal", "multi_teacher", "multi_stage"):
        t = getattr(cfg.distill.methods, key).temperature
        need(t > 0, f"distill.methods.{key}.temperature", "must be > 0")
    need(
        len(ms.aggregate_init) == 2 and all(w > 0 for w in ms.aggregate_init),
        "distill.methods.multi_stage.aggregate_init",
        "must be two positive weights: [teacher, mentor]",
    )


def parse_sweep(data: Any, source: str = "<dict>") -> SweepConfig:
    """Validate an already-parsed mapping (used by tests and by `load_sweep`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        cfg = _build(SweepConfig, data, "")
        _check_ranges(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def load_sweep(path: str | Path) -> SweepConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such sweep file")
    try:
        # safe_load: plain data only, never Python object construction.
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where} YAML syntax error: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the sweep file ({err.strerror or err})") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nesting is too deep") from None
    except Exception as err:  # safe_load's constructors raise plain ValueErrors, e.g. for a date 2024-13-45
        text = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"{path}: unreadable YAML value ({type(err).__name__}: {text[:160]})") from None
    return parse_sweep(data, str(path))


# ---- command-line overrides ---------------------------------------------------------------------


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["grid.ks=[0.2, 0.4]", "training.epochs=3"] -> {"grid.ks": [0.2, 0.4], "training.epochs": 3}.

    Values are YAML-typed (3 -> int, 0.5 -> float, true -> bool, [a, b] -> list, null -> None), as
    in the sweep file; a bad item is one ConfigError line naming it."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"command line: {item!r}: expected key=value (e.g. training.epochs=3)")
        if not all(part.isidentifier() for part in key.split(".")):
            raise ConfigError(f"command line: {item!r}: {key!r} is not a dotted key (e.g. grid.ks)")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"command line: {item!r}: the value is not valid YAML ({problem})") from None
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data["grid"]["ks"] = value for key "grid.ks"; missing sections are created."""
    node, parts = data, key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"command line: {key}: {where} is a value ({_show(child)}), not a section")
        node = child
    node[parts[-1]] = value


def load_sweep_with_overrides(path: str | Path, items: list[str]) -> tuple[SweepConfig, dict[str, Any]]:
    """`python -m avkd sweep FILE key=value ...`: the file, validated alone (its errors name the file),
    then with the overrides applied and validated again by the same rules (their errors name them).
    Returns the config and the overrides as parsed (what the sweep run records)."""
    cfg = load_sweep(path)
    overrides = parse_overrides(items)
    if not overrides:
        return cfg, overrides
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for key, value in overrides.items():
        _set_dotted(data, key, value)
    shown = " ".join(f"{k}={_show(v)}" for k, v in overrides.items())
    return parse_sweep(data, f"{path} with {shown}"), overrides
