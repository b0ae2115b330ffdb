"""Grounded attribute accuracy: the parser on hand-written captions (paraphrases, negatives), the
per-group scoring, and the stored attributes of a corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avkd.data import synth
from avkd.errors import DataError
from avkd.evaluation.attributes import (
    GROUPS,
    attribute_accuracy,
    load_attributes,
    oracle_caption,
    parse_caption,
    score_caption,
)

MSRVTT_FIXTURE = Path(__file__).parent / "fixtures" / "msrvtt_mini"


def truth(**changes) -> dict:
    """Stored attributes of a clip: two small red circles on dark, fast high beeps, a flash, no bang."""
    base = {
        "colour": "red",
        "shape": "circle",
        "size": "small",
        "count": 2,
        "background": "dark",
        "sound": "beeps",
        "pitch": "high",
        "rhythm": "fast",
        "visual_event": "flash",
        "audio_event": None,
    }
    return {**base, **changes}


def asserted(caption: str) -> dict:
    """Only the attributes the caption asserts something about."""
    return {a: v for a, v in parse_caption(caption).items() if v}


@pytest.mark.parametrize(
    "caption, expected",
    [
        (
            "two small red circles on a dark background with fast high beeps and the screen flashes white",
            {
                "count": {2},
                "size": {"small"},
                "colour": {"red"},
                "shape": {"circle"},
                "background": {"dark"},
                "sound": {"beeps"},
                "rhythm": {"fast"},
                "pitch": {"high"},
                "visual_event": {"flash"},
            },
        ),
        # paraphrases: synonyms, plural nouns, "a single", two-word pitch words, another word order
        (
            "a rapid shrill beeping plays as a single tiny blue ball appears against a black screen",
            {
                "sound": {"beeps"},
                "rhythm": {"fast"},
                "pitch": {"high"},
                "count": {1},
                "size": {"small"},
                "colour": {"blue"},
                "shape": {"circle"},
                "background": {"dark"},
            },
        ),
        (
            "three huge green boxes against a bright backdrop accompanied by a low pitched drone and a thud is heard",
            {
                "count": {3},
                "size": {"big"},
                "colour": {"green"},
                "shape": {"square"},
                "background": {"light"},
                "sound": {"tone"},
                "pitch": {"low"},
                "audio_event": {"bang"},
            },
        ),
        (
            "crackling static while a yellow triangle is shown and a plus sign shows up",  # "a": one object
            {"sound": {"noise"}, "colour": {"yellow"}, "shape": {"triangle"}, "count": {1}, "visual_event": {"cross"}},
        ),
        # negatives: silence in its wordings, a denied sound claims silence, denied events are no events
        ("a red circle in silence", {"colour": {"red"}, "shape": {"circle"}, "count": {1}, "sound": {"silence"}}),
        ("the video is silent", {"sound": {"silence"}}),
        (
            "two dots with no sound, a cross shows up",
            {"count": {2}, "shape": {"circle"}, "sound": {"silence"}, "visual_event": {"cross"}},
        ),
        (
            "a blue square without any beep",
            {"colour": {"blue"}, "shape": {"square"}, "count": {1}, "sound": {"silence"}},
        ),
        ("nothing can be heard", {"sound": {"silence"}}),
        ("a low hum and no fast beeps", {"sound": {"tone"}, "pitch": {"low"}}),  # the denied beeps take their words
        ("green circles with no flash and no bang", {"colour": {"green"}, "shape": {"circle"}}),
        # contradictions are kept, so scoring can count them wrong
        (
            "a red and blue circle with a hiss in silence",
            {"colour": {"red", "blue"}, "shape": {"circle"}, "count": {1}, "sound": {"noise", "silence"}},
        ),
        ("", {}),
    ],
)
def test_parser_on_hand_written_captions(caption, expected):
    assert asserted(caption) == expected


def test_white_flash_is_not_a_white_background():
    assert parse_caption("the screen flashes white on a black background")["background"] == {"dark"}
    assert parse_caption("a flash of light appears")["background"] == set()


def test_score_caption_per_group():
    t = truth()
    assert score_caption("two small red circles on a dark background with fast high beeps and a white flash", t) == {
        "visual_static": 1.0,
        "audio": 1.0,
        "visual_event": 1.0,
        "audio_event": 1.0,
    }
    # wrong colour, no background (3/5); slow instead of fast (2/3); flash missed; a bang that is not there
    assert score_caption("two small blue circles with slow high beeps and a bang is heard", t) == {
        "visual_static": 0.6,
        "audio": pytest.approx(2 / 3),
        "visual_event": 0.0,
        "audio_event": 0.0,
    }
    # silence for a clip with sound: the sound is wrong, pitch and rhythm are not stated
    assert score_caption("two small red circles on a dark background in silence", t)["audio"] == 0.0


def test_score_caption_applies_only_what_the_clip_has():
    silent = truth(sound="silence", pitch=None, rhythm=None, visual_event=None)
    assert score_caption("a dark background with two small red dots without any sound", silent) == {
        "visual_static": 1.0,
        "audio": 1.0,
        "visual_event": 1.0,
        "audio_event": 1.0,
    }
    noise = truth(sound="noise", pitch=None, rhythm=None)
    assert score_caption("static noise", noise)["audio"] == 1.0
    tone = truth(sound="tone", pitch="low", rhythm=None)
    assert score_caption("a high tone", tone)["audio"] == 0.5


def test_attribute_accuracy_means_and_per_video():
    truths = {"v1": truth(), "v2": truth(colour="green", visual_event=None, audio_event="bang")}
    preds = {
        "v1": "two small red circles on a dark background with fast high beeps and the screen flashes white",
        "v2": "two small red circles on a dark background with fast high beeps",
    }
    means, per_video = attribute_accuracy(preds, truths)
    assert per_video["v1"] == {g: 1.0 for g in GROUPS}
    assert per_video["v2"] == {"visual_static": 0.8, "audio": 1.0, "visual_event": 1.0, "audio_event": 0.0}
    assert means == {"visual_static": pytest.approx(0.9), "audio": 1.0, "visual_event": 1.0, "audio_event": 0.5}
    assert attribute_accuracy(preds, None) is None and attribute_accuracy(preds, {}) is None
    with pytest.raises(DataError, match="video 'v3' has no stored attributes"):
        attribute_accuracy({**preds, "v3": "a circle"}, truths)


def test_every_generated_reference_parses_to_its_clip():
    """The parser knows every wording the generator uses: each reference scores 1.0 on every group."""
    for ann in synth.annotations(60, 4).values():
        truths = {v["video_id"]: v["avkd"] for v in ann["videos"]}
        for s in ann["sentences"]:
            assert score_caption(s["caption"], truths[s["video_id"]]) == {g: 1.0 for g in GROUPS}, s["caption"]


def test_oracle_captions_say_exactly_what_they_are_asked_to():
    t = truth(audio_event="bang")
    assert oracle_caption(t) == (
        "two small red circles on a dark background with fast high beeps and "
        "the screen flashes white and a bang is heard"
    )
    assert score_caption(oracle_caption(t, audio=False), t)["audio"] == 0.0
    assert score_caption(oracle_caption(t, events=False), t)["visual_event"] == 0.0
    assert (
        oracle_caption(truth(sound="silence", pitch=None, rhythm=None, visual_event=None))
        == "two small red circles on a dark background in silence"
    )


def test_load_attributes(tmp_path):
    assert load_attributes(MSRVTT_FIXTURE) is None  # MSR-VTT: absent, not zero
    for name, ann in synth.annotations(10, 0).items():
        (tmp_path / name).write_text(json.dumps(ann))
    stored = load_attributes(tmp_path)
    assert sorted(stored) == sorted(f"video{i}" for i in range(10))
    assert stored["video4"] == json.loads(json.dumps(synth.asdict(synth.clip_specs(10, 0)[4])))
    ann = json.loads((tmp_path / synth.TEST_FILE).read_text())
    del ann["videos"][0]["avkd"]["rhythm"]  # what a v1 corpus stored
    (tmp_path / synth.TEST_FILE).write_text(json.dumps(ann))
    with pytest.raises(
        DataError,
        match=rf"test_videodatainfo.json: video '{ann['videos'][0]['video_id']}': "
        r"stored attributes lack rhythm",
    ):
        load_attributes(tmp_path)
    (tmp_path / synth.TEST_FILE).write_text("{")
    with pytest.raises(DataError, match="test_videodatainfo.json: cannot read the video list"):
        load_attributes(tmp_path)
