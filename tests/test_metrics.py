"""COCO-caption metric wiring (real pycocoevalcap + Java), SCORE and Diff arithmetic."""

import math
import os
import random
from collections import Counter

import pytest

from avkd.errors import AvkdError, DataError
from avkd.evaluation import metrics as M
from avkd.evaluation.metrics import CaptionScorer, ValidationScorer, ptb_tokenize
from avkd.evaluation.score import available_terms, common_terms, final_score, mean_std, relative_diff, score

REFS = {
    "v1": ["A man is playing a guitar.", "Someone plays the guitar!"],
    "v2": ["A dog runs in the park", "The brown dog is running."],
    "v3": ["Two people are cooking food in a kitchen"],
}
PREDS = {"v1": "a man plays guitar", "v2": "a dog is running in a park", "v3": "a woman is cooking"}


def tokens(text):
    return text.lower().replace(".", "").replace("!", "").split()


def bleu1_by_hand(refs, preds):
    """Corpus BLEU-1: clipped unigram matches / hypothesis words, brevity penalty on closest ref lengths."""
    matched = hyp_len = ref_len = 0
    for v, pred in preds.items():
        hyp = tokens(pred)
        ref_toks = [tokens(r) for r in refs[v]]
        max_ref = Counter()
        for r in ref_toks:
            for w, c in Counter(r).items():
                max_ref[w] = max(max_ref[w], c)
        matched += sum(min(c, max_ref[w]) for w, c in Counter(hyp).items())
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in ref_toks)[1]
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * matched / hyp_len


def lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            table[i + 1][j + 1] = table[i][j] + 1 if a[i] == b[j] else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def rouge_l_by_hand(refs, preds, beta=1.2):
    """Mean over videos of the LCS F-measure with the best precision and best recall over references."""
    scores = []
    for v, pred in preds.items():
        hyp = tokens(pred)
        prec = max(lcs(tokens(r), hyp) / len(hyp) for r in refs[v])
        rec = max(lcs(tokens(r), hyp) / len(tokens(r)) for r in refs[v])
        scores.append(0.0 if prec == 0 or rec == 0 else (1 + beta**2) * prec * rec / (rec + beta**2 * prec))
    return sum(scores) / len(scores)


@pytest.fixture(scope="module")
def scored():
    return CaptionScorer().score(REFS, PREDS)


def test_bleu1_and_rouge_l_match_hand_computation(scored):
    metrics, _ = scored
    assert metrics["bleu_1"] == pytest.approx(bleu1_by_hand(REFS, PREDS), abs=1e-6)
    assert metrics["rouge_l"] == pytest.approx(rouge_l_by_hand(REFS, PREDS), abs=1e-9)


def test_full_metric_set_and_per_video(scored):
    metrics, per_video = scored
    assert list(metrics)[:7] == ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider"]
    assert all(0 <= metrics[m] <= 1 for m in ("bleu_1", "bleu_4", "meteor", "rouge_l"))
    assert metrics["score"] == pytest.approx(final_score(metrics)[0])
    assert set(per_video) == set(REFS)
    # v3's prediction shares only 'a', 'is', 'cooking' with its reference; v2's is much closer.
    assert per_video["v2"]["cider"] > per_video["v3"]["cider"]
    assert per_video["v2"]["meteor"] > per_video["v3"]["meteor"]


def test_exact_match_scores_perfectly():
    refs = {"a": ["a man is talking to a woman"], "b": ["the cat sleeps on the red sofa"]}
    metrics, _ = CaptionScorer().score(refs, {v: r[0] for v, r in refs.items()})
    for n in range(1, 5):
        assert metrics[f"bleu_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["rouge_l"] == pytest.approx(1.0)
    assert metrics["meteor"] == pytest.approx(1.0, abs=1e-3)


def test_validation_scorer_matches_full_scorer(scored):
    metrics, _ = scored
    preds = {v: " ".join(tokens(p)) for v, p in PREDS.items()}
    val = ValidationScorer(REFS).score(preds)
    for m in ("bleu_1", "bleu_4", "rouge_l", "cider"):
        assert val[m] == pytest.approx(metrics[m])


def test_fixed_references_give_the_library_numbers_exactly():
    """Validation's cached references (BLEU's cooked refs, CIDEr's df and tf-idf vectors) change no digit:
    many videos with several references, predictions of every length (empty included), several epochs."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]

    def caption():
        return " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))

    gts = {f"v{i}": [caption() for _ in range(rng.randint(1, 6))] for i in range(30)}
    fixed = M.FixedReferences(gts)
    for epoch in range(4):
        res = {v: [" ".join(rng.choice(words) for _ in range(rng.randint(0, 14)))] for v in gts}
        if epoch == 3:
            res = {v: [refs[0]] for v, refs in gts.items()}  # perfect predictions
        assert fixed.score(res) == M.score_tokenized(gts, res)[0]


def test_validation_scorer_is_the_full_scorers_numbers_exactly():
    preds = {v: " ".join(tokens(p)) for v, p in PREDS.items()}
    gts = M.ptb_tokenize_refs(REFS)
    assert ValidationScorer(REFS).score(preds) == M.score_tokenized(gts, {v: [preds[v]] for v in gts})[0]


def test_ptb_tokenize_in_python_side_temp_and_keeps_alignment():
    before = {p: sorted(os.listdir(p)) for p in (M.PTB_JAR.parent, M.PACKAGE_DIR)}
    out = ptb_tokenize({"x": ["A Man,\nTALKING!", "", "Café\u2028crème."], "y": ["Don't stop."]})
    assert out == {"x": ["a man talking", "", "café crème"], "y": ["do n't stop"]}
    assert {p: sorted(os.listdir(p)) for p in before} == before  # nothing written into site-packages


def test_meteor_jvm_is_reused():
    CaptionScorer().score(REFS, PREDS)
    pid = M._meteor.meteor_p.pid
    CaptionScorer().score(REFS, PREDS)
    assert M._meteor.meteor_p.pid == pid


def test_spice_unavailable_is_one_message(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("AVKD_SPICE_JARS", raising=False)
    M._spice_warned.clear()
    scorer = CaptionScorer(spice_jars=str(tmp_path))
    assert not scorer.spice_available and str(tmp_path) in scorer.spice_note
    metrics, _ = scorer.score(REFS, PREDS)
    scorer.score(REFS, PREDS)
    assert "spice" not in metrics
    err = capsys.readouterr().err
    assert err.count("SPICE not available") == 1 and "stanford-corenlp-3.6.0" in err
    assert final_score(metrics)[1] == ["bleu", "meteor", "rouge_l", "cider"]


def test_spice_run_failure_is_one_message_not_a_crash(capsys, tmp_path):
    """Jars that look present but are broken: SPICE really runs, fails, and is reported unavailable."""
    for name in M.SPICE_NEEDS:
        (tmp_path / name).write_bytes(b"")
    M._spice_warned.clear()
    scorer = CaptionScorer(spice_jars=str(tmp_path), meteor=False)
    assert scorer.spice_available
    metrics, per_video = scorer.score(REFS, PREDS)
    assert "spice" not in metrics and "spice" not in per_video["v1"]
    assert not scorer.spice_available
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "SPICE run failed" in err and "NoClassDefFoundError" in err


def test_misaligned_predictions_are_clear_errors():
    with pytest.raises(DataError, match="unknown video 'zz'"):
        CaptionScorer().score(REFS, {**PREDS, "zz": "a cat"})
    with pytest.raises(DataError, match="no prediction for video 'v3'"):
        CaptionScorer().score(REFS, {"v1": "a", "v2": "b"})


# ---- SCORE and Diff -----------------------------------------------------------------------------

TEACHER = dict(
    bleu_1=0.760, bleu_2=0.612, bleu_3=0.473, bleu_4=0.352, cider=0.397, meteor=0.254, rouge_l=0.583, spice=0.054
)  # Table I of the paper
STUDENT = dict(
    bleu_1=0.722, bleu_2=0.555, bleu_3=0.422, bleu_4=0.311, cider=0.267, meteor=0.236, rouge_l=0.554, spice=0.045
)  # L_rep student, k = 0.2


def test_score_reproduces_table_one():
    t_score, names = final_score(TEACHER)
    assert names == ["bleu", "meteor", "rouge_l", "cider", "spice"]
    assert t_score == pytest.approx(((0.760 + 0.612 + 0.473 + 0.352) / 4 + 0.254 + 0.583 + 0.397 + 0.054) / 5)
    assert round(t_score, 3) == 0.367  # the paper prints 0.368
    s_score, _ = final_score(STUDENT)
    assert round(s_score, 3) == 0.321
    assert relative_diff(0.321, 0.368) == pytest.approx(0.1277, abs=1e-4)  # Table I: 0.127


def test_score_without_spice():
    for spice in (None, float("nan")):
        score, names = final_score({**TEACHER, "spice": spice})
        assert names == ["bleu", "meteor", "rouge_l", "cider"]
        assert score == pytest.approx(((0.760 + 0.612 + 0.473 + 0.352) / 4 + 0.254 + 0.583 + 0.397) / 4)
    no_key = {k: v for k, v in TEACHER.items() if k != "spice"}
    assert final_score(no_key)[1] == ["bleu", "meteor", "rouge_l", "cider"]


def test_score_needs_the_other_metrics():
    with pytest.raises(AvkdError, match="meteor"):
        final_score({k: v for k, v in TEACHER.items() if k != "meteor"})


def test_relative_diff():
    assert relative_diff(0.3, 0.4) == pytest.approx(0.25)
    assert relative_diff(0.5, 0.4) == pytest.approx(-0.25)  # a student better than its teacher
    assert math.isnan(relative_diff(0.1, 0.0))


def test_table_score_uses_the_terms_every_run_has():
    no_spice = {k: v for k, v in STUDENT.items() if k != "spice"}
    assert available_terms(TEACHER) == ["bleu", "meteor", "rouge_l", "cider", "spice"]
    assert available_terms({**TEACHER, "spice": float("nan")}) == ["bleu", "meteor", "rouge_l", "cider"]
    terms = common_terms([TEACHER, no_spice])
    assert terms == ["bleu", "meteor", "rouge_l", "cider"]
    assert score(TEACHER, terms) == pytest.approx(final_score({**TEACHER, "spice": None})[0])
    assert common_terms([]) == []
    with pytest.raises(AvkdError, match="SCORE needs spice"):
        score(no_spice, ["bleu", "spice"])


def test_mean_std_over_seeds():
    assert mean_std([]) == (None, None)
    assert mean_std([0.5]) == (0.5, None)
    mean, std = mean_std([0.3, 0.5])
    assert mean == pytest.approx(0.4) and std == pytest.approx(math.sqrt(0.02))  # sample std (n - 1)
