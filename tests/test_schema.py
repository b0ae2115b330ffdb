"""trackers/schema.py: metric names round-trip through their parsers; the weights tags."""

import pytest

from trackers import schema


def test_time_metric_names_round_trip():
    for k in (0.2, 0.4, 0.6, 0.8, 1.0):
        for e2e in (False, True):
            for std in (False, True):
                assert schema.parse_time_metric(schema.time_metric(k, e2e, std)) == (k, e2e, std)
    assert schema.parse_time_metric("time/overhead") is None
    assert schema.parse_time_metric(schema.SWEEP_FEATURES_S) is None  # a sweep-run time, not a Table II one
    for name in schema.TIMING_METRICS.values():  # current Table II names: per step, not legacy k-in-name ones
        assert schema.parse_time_metric(name) is None


def test_metric_scheme():
    """Durations are time/<phase>_s, stage curves train/stage<n>/<x>, Table II steps are the % of frames."""
    for name in (
        schema.TRIAL_TIME_S,
        schema.EPOCH_S,
        schema.DECODE_S,
        schema.SWEEP_FEATURES_S,
        schema.SWEEP_TRIALS_S,
        schema.SWEEP_TIMING_S,
        *schema.TIMING_METRICS.values(),
    ):
        assert name.startswith(schema.TIME_PREFIX) and name.endswith("_s"), name
    assert schema.phase_time_metric("decode_frames") == "time/decode_frames_s"
    assert schema.phase_time_metric("tune k0.2 rep+ce") == "time/tune_k0.2_rep_ce_s"  # names MLflow accepts
    assert schema.train_stage_metric(2, "train/loss") == "train/stage2/loss"
    assert schema.train_stage_metric(1, "val/cider") == "val/cider"
    assert [schema.timing_step(k) for k in (0.2, 0.6, 1.0)] == [20, 60, 100]
    assert schema.timing_step_k(schema.timing_step(0.4)) == 0.4
    assert all(not v.startswith(("trials/", "time/")) for v in schema.SWEEP_TRIAL_COUNTS.values())  # tags


def test_early_exit_metric_names_round_trip():
    for threshold in (0.5, 0.9, 0.95, 1.0):
        for name in (schema.SCORE, schema.DECODE_S_PER_VIDEO, "bleu_4"):
            assert schema.parse_early_exit_metric(schema.early_exit_metric(threshold, name)) == (threshold, name)
    assert schema.parse_early_exit_metric(schema.TEST_SCORE) is None
    assert schema.parse_early_exit_metric("ee/t0.9.9/score") is None


def test_metric_lists_are_orders_of_the_same_names():
    assert sorted(schema.TEST_METRICS) == sorted(schema.TABLE1_METRICS)
    assert len(set(schema.TEST_METRICS)) == 8 and schema.TEST_SCORE == "test/score"


@pytest.mark.parametrize(
    "weights, summary, detail",
    [
        (
            {"inception": "pretrained", "cnn14": "pretrained", "fingerprint": "a-b"},
            "pretrained",
            "inception=pretrained,cnn14=pretrained",
        ),
        ({"inception": "random", "cnn14": "random"}, "random", "inception=random,cnn14=random"),
        ({"inception": "pretrained", "cnn14": "random"}, "mixed", "inception=pretrained,cnn14=random"),
        ({"inception": "random", "cnn10": "pretrained"}, "mixed", "inception=random,cnn10=pretrained"),  # any backbones
        ({"inception": "pretrained", "cnn10": "pretrained"}, "pretrained", "inception=pretrained,cnn10=pretrained"),
        ({"inception": "unknown"}, "mixed", "inception=unknown"),  # never claims pretrained or random without knowing
    ],
)
def test_weights_tags(weights, summary, detail):
    assert schema.weights_tags(weights) == {schema.WEIGHTS: summary, schema.WEIGHTS_DETAIL: detail}
    assert summary in schema.WEIGHTS_KINDS


def test_weights_tags_need_a_backbone():
    with pytest.raises(ValueError, match="no backbone status"):
        schema.weights_tags({"fingerprint": "x"})
