"""COCO-caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE when possible); SCORE is score.py's.

pycocoevalcap's scorers are called one by one: `COCOEvalCap.evaluate()` would construct `Spice()`,
which tries to download Stanford CoreNLP. Two more departures from the library, both on purpose:
- PTB tokenisation runs the library's jar ourselves with the captions on stdin: the library's
  `PTBTokenizer` writes temp files inside site-packages (fails on a read-only install).
- METEOR keeps ONE JVM per process (~7 s to start), created lazily and closed at exit; inside a
  sweep the trials share one (avkd/evaluation/meteor_service.py), which runs this module's code.

`python -m avkd evaluate --refs ANNOTATIONS.json --preds PREDS.json` is `cmd_evaluate` below.
"""

from __future__ import annotations

import atexit
import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pycocoevalcap
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider import cider_scorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from avkd.clock import phase
from avkd.data.vocab import normalize_text
from avkd.errors import AvkdError, DataError
from avkd.evaluation import score as S
from trackers.schema import SCORE, TEST_METRICS

METRICS = TEST_METRICS  # the names a CaptionScorer reports, without "test/"
PACKAGE_DIR = Path(next(iter(pycocoevalcap.__path__)))  # a namespace package: no __file__
PTB_JAR = PACKAGE_DIR / "tokenizer" / "stanford-corenlp-3.4.1.jar"
SPICE_JAR = PACKAGE_DIR / "spice" / "spice-1.0.jar"
SPICE_NEEDS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
# Same list as pycocoevalcap's PTBTokenizer: tokens dropped after tokenisation.
PUNCTUATIONS = {
    "''",
    "'",
    "``",
    "`",
    "-LRB-",
    "-RRB-",
    "-LCB-",
    "-RCB-",
    ".",
    "?",
    "!",
    ",",
    ":",
    "-",
    "--",
    "...",
    ";",
}


def _need_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise AvkdError(
            "java not found on PATH: PTB tokenisation and METEOR (pycocoevalcap) need Java 17 "
            "(apt-get install openjdk-17-jre-headless)"
        )
    return java


def _java_error(stderr: bytes) -> str:
    """The telling line of a Java failure: the first exception/error line, else the last line."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    telling = [line for line in lines if "Exception" in line or "Error" in line]
    return (telling or lines or ["no message"])[0 if telling else -1][:300]


# ---- PTB tokenisation -------------------------------------------------------------------------


def ptb_tokenize(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """{video: [caption, ...]} -> same shape, PTB-tokenised, lower-cased, punctuation removed.

    Same command as pycocoevalcap's PTBTokenizer, but the text goes through stdin, so nothing is
    written into the package folder (read-only installs, several processes at once).
    """
    keys = [k for k, caps in captions.items() for _ in caps]
    # The training tokeniser's normalisation (NFKC, ASCII apostrophes, casefold) runs first, so
    # references and model words agree (see avkd/data/vocab.py). It also makes every line break
    # (\n, \r, \v, U+2028 ...) a space, which would otherwise split a caption into two lines.
    lines = [normalize_text(c) for caps in captions.values() for c in caps]
    if not lines:
        return {k: [] for k in captions}
    cmd = [
        _need_java(),
        "-cp",
        str(PTB_JAR),
        "edu.stanford.nlp.process.PTBTokenizer",
        "-preserveLines",
        "-lowerCase",
        "-encoding",
        "utf-8",
    ]
    with phase("ptb_tokenize"):  # a JVM start per call: ~1 s of it is start-up
        proc = subprocess.run(cmd, input="\n".join(lines).encode("utf-8"), capture_output=True)
    if proc.returncode != 0:
        raise AvkdError(
            f"PTB tokenizer ({PTB_JAR.name}) failed with exit code {proc.returncode}: {_java_error(proc.stderr)}"
        )
    out_lines = proc.stdout.decode("utf-8").split("\n")
    if out_lines and out_lines[-1] == "" and len(out_lines) == len(lines) + 1:
        out_lines.pop()  # trailing newline
    if len(out_lines) != len(lines):
        raise AvkdError(f"PTB tokenizer returned {len(out_lines)} lines for {len(lines)} captions")
    out: dict[str, list[str]] = {k: [] for k in captions}
    for key, line in zip(keys, out_lines):
        out[key].append(" ".join(w for w in line.rstrip().split(" ") if w and w not in PUNCTUATIONS))
    return out


_tokenized_refs: dict[str, dict[str, list[str]]] = {}


def _refs_key(refs: dict[str, list[str]]) -> str:
    return hashlib.sha256(json.dumps(refs, sort_keys=True).encode("utf-8")).hexdigest()


def ptb_tokenize_refs(refs: dict[str, list[str]]) -> dict[str, list[str]]:
    """ptb_tokenize, remembered per process: every trial of a sweep scores against the same references,
    and each call starts a JVM. (Tokenisation is per line, so tokenising them apart changes nothing.)"""
    key = _refs_key(refs)
    if key not in _tokenized_refs:
        _tokenized_refs[key] = ptb_tokenize(refs)
    return _tokenized_refs[key]


# ---- METEOR: one JVM per process --------------------------------------------------------------

MeteorFn = Callable[[dict[str, list[str]], dict[str, list[str]]], tuple[float, list[float]]]
_meteor: Meteor | None = None
_meteor_lock = threading.Lock()


def _meteor_scorer() -> Meteor:
    global _meteor
    if _meteor is None or _meteor.meteor_p.poll() is not None:
        _need_java()
        with phase("meteor_start"):
            _meteor = Meteor()
            _meteor._stat("a", ["a"])  # blocks until the JVM has loaded (what the ~7 s start costs)
    return _meteor


def close_meteor() -> None:
    """Stop this process's METEOR JVM (also registered atexit)."""
    global _meteor
    if _meteor is not None:
        proc = _meteor.meteor_p
        _meteor = None
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        proc.kill()
        proc.wait()


atexit.register(close_meteor)


def meteor_in_process(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """(corpus METEOR, per-video METEOR) of tokenised captions from this process's JVM."""
    with _meteor_lock:
        try:
            score, scores = _meteor_scorer().compute_score(gts, res)
        except (ValueError, OSError) as err:
            # A dead or confused JVM: drop it (the next call starts a fresh one) and say so.
            close_meteor()
            raise AvkdError(f"METEOR ({Meteor.__module__}) failed: {err}") from None
    return float(score), [float(s) for s in scores]


# ---- SPICE: only with the Stanford CoreNLP 3.6.0 jars ------------------------------------------

_spice_warned: set[str] = set()


def find_spice_jars(spice_jars: str | None = None) -> tuple[Path | None, str]:
    """Folder holding the CoreNLP 3.6.0 jars SPICE needs, or (None, why not).

    Looked for in: the argument, $AVKD_SPICE_JARS, pycocoevalcap's own spice/lib folder.
    """
    candidates = [spice_jars, os.environ.get("AVKD_SPICE_JARS"), str(SPICE_JAR.parent / "lib")]
    for folder in [c for c in candidates if c]:
        if all((Path(folder) / name).is_file() for name in SPICE_NEEDS):
            if shutil.which("java") is None:
                return None, "java not found on PATH"
            return Path(folder), ""
    looked = spice_jars or os.environ.get("AVKD_SPICE_JARS")
    where = (
        f"not in {looked} nor in pycocoevalcap/spice/lib"
        if looked
        else "set evaluation.spice_jars, --spice-jars or $AVKD_SPICE_JARS to a folder with them"
    )
    return None, f"SPICE not available: it needs {' and '.join(SPICE_NEEDS)} ({where})"


def _spice_score(gts: dict[str, list[str]], res: dict[str, list[str]], jars: Path) -> tuple[float, list[float]]:
    """Run SPICE 1.0 with the given jars. No `-cache`: its LMDB cache breaks on Java 17."""
    ids = list(gts)
    with tempfile.TemporaryDirectory(prefix="avkd-spice-") as tmp:
        in_file, out_file = Path(tmp) / "in.json", Path(tmp) / "out.json"
        in_file.write_text(json.dumps([{"image_id": i, "test": res[i][0], "refs": gts[i]} for i in ids]))
        classpath = os.pathsep.join([str(SPICE_JAR), str(SPICE_JAR.parent / "lib" / "*"), str(jars / "*")])
        cmd = [
            _need_java(),
            "-Xmx8G",
            "-cp",
            classpath,
            "edu.anu.spice.SpiceScorer",
            str(in_file),
            "-out",
            str(out_file),
            "-subset",
            "-silent",
        ]
        proc = subprocess.run(cmd, capture_output=True, cwd=tmp)
        if proc.returncode != 0 or not out_file.is_file():
            raise RuntimeError(f"exit code {proc.returncode}: {_java_error(proc.stderr)}")
        by_id = {item["image_id"]: item["scores"]["All"]["f"] for item in json.loads(out_file.read_text())}
    scores = [float(by_id[i]) if by_id.get(i) is not None else math.nan for i in ids]
    finite = [s for s in scores if math.isfinite(s)]
    return (sum(finite) / len(finite) if finite else math.nan), scores


def _warn_once(message: str) -> None:
    from avkd.warn import warn_once  # once per sweep, not once per trial worker

    warn_once(message, seen=_spice_warned)


# ---- the scorer ------------------------------------------------------------------------------


def check_alignment(
    refs: dict[str, list[str]], preds: dict[str, str], refs_name: str = "references", preds_name: str = "predictions"
) -> None:
    """Every reference video has exactly one prediction and vice versa; else a one-line DataError."""
    if not refs:
        raise DataError(f"{refs_name}: no reference captions")
    unknown = [v for v in preds if v not in refs]
    if unknown:
        raise DataError(
            f"{preds_name}: prediction for unknown video {unknown[0]!r} "
            f"({len(unknown)} such video(s); not in {refs_name})"
        )
    missing = [v for v in refs if v not in preds]
    if missing:
        raise DataError(
            f"{preds_name}: no prediction for video {missing[0]!r} "
            f"({len(missing)} of {len(refs)} reference video(s) have none)"
        )
    empty = [v for v, caps in refs.items() if not caps]
    if empty:
        raise DataError(f"{refs_name}: video {empty[0]!r} has no reference caption")


class CaptionScorer:
    """Corpus + per-video COCO-caption metrics over ALL references of each video."""

    def __init__(
        self,
        spice_jars: str | None = None,
        meteor: bool = True,
        warn: bool = True,
        meteor_via: MeteorFn = meteor_in_process,
    ):
        self.meteor = meteor
        self.meteor_via = meteor_via  # where the JVM runs (meteor_service.meteor_score: the sweep's one)
        self.warn = warn  # False: the caller shows `spice_note` itself
        self.spice_jars, self.spice_note = find_spice_jars(spice_jars)

    @property
    def spice_available(self) -> bool:
        return self.spice_jars is not None

    def score(
        self, refs: dict[str, list[str]], preds: dict[str, str]
    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """(corpus metrics bleu_1..4, meteor, rouge_l, cider, [spice], score; {video: per-video metrics})."""
        check_alignment(refs, preds)
        ids = list(refs)
        gts = ptb_tokenize_refs(refs)
        res = ptb_tokenize({v: [preds[v]] for v in ids})
        metrics, per_video = score_tokenized(gts, res)
        if self.meteor:
            metrics["meteor"], scores = self.meteor_via(gts, res)
            for v, s in zip(ids, scores):
                per_video[v]["meteor"] = s
        if self.spice_jars is not None:
            try:
                metrics["spice"], scores = _spice_score(gts, res, self.spice_jars)
                for v, s in zip(ids, scores):
                    per_video[v]["spice"] = s
            except (RuntimeError, OSError, ValueError, KeyError) as err:
                self.spice_jars, self.spice_note = None, f"SPICE not available: the SPICE run failed ({err})"
        if self.spice_jars is None and self.warn:
            _warn_once(self.spice_note)
        if self.meteor:
            metrics[SCORE], _ = S.final_score(metrics)
        ordered = {m: metrics[m] for m in (*METRICS, SCORE) if m in metrics}
        return ordered, per_video


def score_tokenized(
    gts: dict[str, list[str]], res: dict[str, list[str]]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """BLEU-1..4, ROUGE-L and CIDEr on already tokenised text (no JVM): the cheap per-epoch scores."""
    bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_per = Rouge().compute_score(gts, res)
    cider, cider_per = Cider().compute_score(gts, res)
    metrics = {f"bleu_{n + 1}": float(bleu[n]) for n in range(4)}
    metrics.update(rouge_l=float(rouge), cider=float(cider))
    per_video = {}
    for j, v in enumerate(gts):
        per_video[v] = {f"bleu_{n + 1}": float(bleu_per[n][j]) for n in range(4)}
        per_video[v].update(rouge_l=float(rouge_per[j]), cider=float(cider_per[j]))
    return metrics, per_video


class FixedReferences:
    """BLEU-1..4, ROUGE-L and CIDEr of new predictions against the SAME tokenised references, with the
    references' half of the work done once: BLEU's cooked references (the library's own `retest`) and
    CIDEr's document frequencies and reference tf-idf vectors. Same numbers as score_tokenized.

    CIDEr repeats pycocoevalcap's CiderScorer.compute_cider arithmetic step for step (including its
    length = number of bigrams): the library computes the references' vectors inside a closure, again
    for every call, which was most of the per-epoch validation time.
    """

    N, SIGMA = 4, 6.0  # pycocoevalcap's Cider() defaults

    def __init__(self, gts: dict[str, list[str]]):
        self.gts = gts
        self.bleu = BleuScorer(n=self.N)
        for refs in gts.values():
            self.bleu += (None, refs)
        cooked = [cider_scorer.cook_refs(refs, self.N) for refs in gts.values()]
        self.df: dict[tuple, float] = {}
        for refs in cooked:
            for ngram in {ngram for ref in refs for ngram in ref}:
                self.df[ngram] = self.df.get(ngram, 0.0) + 1
        self.ref_len = np.log(float(len(cooked)))
        self.cider_refs = [[self._tfidf(ref) for ref in refs] for refs in cooked]

    def _tfidf(self, counts: dict[tuple, int]) -> tuple[list[dict], list[float], int]:
        """CiderScorer's counts2vec: (tf-idf vector per n, its norm per n, length)."""
        vec: list[dict] = [{} for _ in range(self.N)]
        norm = [0.0 for _ in range(self.N)]
        length = 0
        for ngram, term_freq in counts.items():
            df = np.log(max(1.0, self.df.get(ngram, 0.0)))
            n = len(ngram) - 1
            vec[n][ngram] = float(term_freq) * (self.ref_len - df)
            norm[n] += pow(vec[n][ngram], 2)
            if n == 1:
                length += term_freq
        return vec, [np.sqrt(x) for x in norm], length

    def _sim(self, hyp: tuple, ref: tuple) -> np.ndarray:
        """CiderScorer's sim: the Gaussian-penalised cosine similarity per n."""
        (vec_hyp, norm_hyp, length_hyp), (vec_ref, norm_ref, length_ref) = hyp, ref
        delta = float(length_hyp - length_ref)
        val = np.array([0.0 for _ in range(self.N)])
        for n in range(self.N):
            for ngram, weight in vec_hyp[n].items():
                ref_weight = vec_ref[n].get(ngram, 0.0)
                val[n] += min(weight, ref_weight) * ref_weight
            if (norm_hyp[n] != 0) and (norm_ref[n] != 0):
                val[n] /= norm_hyp[n] * norm_ref[n]
            val[n] *= np.e ** (-(delta**2) / (2 * self.SIGMA**2))
        return val

    def _cider(self, hyps: list[str]) -> tuple[float, list[float]]:
        scores = []
        for hyp, refs in zip(hyps, self.cider_refs):
            vec = self._tfidf(cider_scorer.cook_test(hyp, self.N))
            score = np.array([0.0 for _ in range(self.N)])
            for ref in refs:
                score += self._sim(vec, ref)
            score_avg = np.mean(score)
            score_avg /= len(refs)
            score_avg *= 10.0
            scores.append(score_avg)
        return np.mean(np.array(scores)), scores

    def score(self, res: dict[str, list[str]]) -> dict[str, float]:
        """Corpus bleu_1..4, rouge_l, cider of `res` ({video: [caption]}, the references' videos and order)."""
        if list(res) != list(self.gts):
            raise DataError("predictions must name the references' videos, in their order")
        hyps = [caps[0] for caps in res.values()]
        bleu, _ = self.bleu.retest(hyps).compute_score(option="closest", verbose=0)
        rouge, _ = Rouge().compute_score(self.gts, res)
        cider, _ = self._cider(hyps)
        metrics = {f"bleu_{n + 1}": float(bleu[n]) for n in range(4)}
        metrics.update(rouge_l=float(rouge), cider=float(cider))
        return metrics


_fixed_refs: dict[str, FixedReferences] = {}


class ValidationScorer:
    """Cheap per-epoch CIDEr / BLEU for model selection: references PTB-tokenised once, their n-grams
    counted once (FixedReferences; both once per process), no METEOR.

    Predictions are expected already tokenised and lower-case (words joined by spaces), as the
    decoder produces them, so no JVM runs per epoch.
    """

    def __init__(self, refs: dict[str, list[str]]):
        if not refs:
            raise DataError("validation split: no videos to validate on")
        self.gts = ptb_tokenize_refs(refs)
        key = _refs_key(self.gts)  # the same validation split for every trial of a worker: counted once
        if key not in _fixed_refs:
            _fixed_refs[key] = FixedReferences(self.gts)
        self.fixed = _fixed_refs[key]

    def score(self, preds: dict[str, str]) -> dict[str, float]:
        check_alignment(self.gts, preds, "validation references", "validation predictions")
        return self.fixed.score({v: [preds[v]] for v in self.gts})


_default_scorers: dict[tuple[str | None, MeteorFn], CaptionScorer] = {}


def default_scorer(spice_jars: str | None = None, meteor_via: MeteorFn = meteor_in_process) -> CaptionScorer:
    """One CaptionScorer per process, SPICE setting and METEOR place (the METEOR JVM is shared anyway)."""
    key = (spice_jars, meteor_via)
    if key not in _default_scorers:
        _default_scorers[key] = CaptionScorer(spice_jars, meteor_via=meteor_via)
    return _default_scorers[key]


# ---- files ------------------------------------------------------------------------------------


def _read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None


def load_references(path: str | Path) -> dict[str, list[str]]:
    """MSR-VTT annotation JSON (`sentences`: [{video_id, caption}, ...]) -> {video: [caption, ...]}."""
    data = _read_json(path, "annotation")
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise DataError(f"{path}: not MSR-VTT format (expected an object with a 'sentences' list)")
    refs: dict[str, list[str]] = {}
    for i, s in enumerate(data["sentences"]):
        if not isinstance(s, dict) or not isinstance(s.get("video_id"), str) or not isinstance(s.get("caption"), str):
            raise DataError(f"{path}: sentences[{i}] needs string 'video_id' and 'caption', got {str(s)[:80]}")
        refs.setdefault(s["video_id"], []).append(s["caption"])
    if not refs:
        raise DataError(f"{path}: 'sentences' is empty")
    return refs


def load_predictions(path: str | Path) -> dict[str, str]:
    """[{"video_id", "caption"}, ...] -> {video: caption}; a duplicate video is an error."""
    data = _read_json(path, "predictions")
    if not isinstance(data, list):
        raise DataError(f'{path}: expected a JSON list of {{"video_id": ..., "caption": ...}}')
    if not data:
        raise DataError(f"{path}: no predictions")
    preds: dict[str, str] = {}
    for i, p in enumerate(data):
        if not isinstance(p, dict) or not isinstance(p.get("video_id"), str) or not isinstance(p.get("caption"), str):
            raise DataError(f"{path}: entry [{i}] needs string 'video_id' and 'caption', got {str(p)[:80]}")
        if p["video_id"] in preds:
            raise DataError(f"{path}: duplicate prediction for video {p['video_id']!r} (entry [{i}])")
        preds[p["video_id"]] = p["caption"]
    return preds


def write_captions(path: str | Path, preds: dict[str, str]) -> None:
    Path(path).write_text(json.dumps([{"video_id": v, "caption": c} for v, c in preds.items()], indent=1))


def write_per_video(path: str | Path, preds: dict[str, str], per_video: dict[str, dict[str, float]]) -> None:
    names = [m for m in METRICS if any(m in s for s in per_video.values())]
    names += sorted({m for s in per_video.values() for m in s if m not in METRICS})  # e.g. attr/<group>
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "caption", *names])
        for v, scores in per_video.items():
            writer.writerow([v, preds[v], *(f"{scores[m]:.6f}" if m in scores else "" for m in names)])


# ---- CLI --------------------------------------------------------------------------------------


def cmd_evaluate(args) -> int:
    """`python -m avkd evaluate --refs A.json --preds P.json [--json OUT] [--spice-jars DIR]`."""
    from rich.console import Console
    from rich.table import Table

    refs = load_references(args.refs)
    preds = load_predictions(args.preds)
    check_alignment(refs, preds, str(args.refs), str(args.preds))
    scorer = CaptionScorer(spice_jars=getattr(args, "spice_jars", None), warn=False)  # the table says it
    metrics, _ = scorer.score(refs, preds)
    score, averaged = S.final_score(metrics)

    table = Table(title=f"Caption metrics, {len(preds)} videos", min_width=34)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in METRICS:
        table.add_row(name, f"{metrics[name]:.4f}" if name in metrics else "n/a")
    table.add_row("SCORE", f"{score:.4f}", style="bold")
    console = Console()
    console.print(table)
    console.print(f"SCORE = mean of {', '.join(averaged)} ('bleu' = mean of BLEU-1..4)", soft_wrap=True)
    if not scorer.spice_available:
        console.print(scorer.spice_note, soft_wrap=True, markup=False)

    if args.json:
        out = {m: metrics.get(m) for m in METRICS}
        out.update(score=score, score_metrics=averaged)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
