"""`python -m avkd ...`: one entry point; each sub-command lives in the module of its concept.

Handlers are imported lazily so `python -m avkd data check` does not pay for torch or ray.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from avkd.errors import AvkdError


def _handler(dotted: str):
    module, func = dotted.rsplit(":", 1)

    def run(args):
        return getattr(importlib.import_module(module), func)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m avkd", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    c = data.add_parser("check", help="validate a dataset folder in MSR-VTT layout and print counts per split")
    c.add_argument("root", help="dataset folder (annotation JSON files + videos)")
    c.add_argument("--json", help="also write the report as JSON to this file")
    c.set_defaults(handler=_handler("avkd.data.check:cmd_check"))
    s = data.add_parser("synth", help="generate the embedded synthetic audio-visual caption corpus")
    s.add_argument("--out", default="data/synth", help="output folder (default: data/synth)")
    s.add_argument("--videos", type=int, default=180, help="number of clips (default: 180)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s.set_defaults(handler=_handler("avkd.data.synth:cmd_synth"))

    f = sub.add_parser("features", help="extract (or rebuild) the cached features of a sweep")
    f.add_argument("--sweep", required=True, help="sweep YAML file")
    f.add_argument("--rebuild", action="store_true", help="drop this sweep's cache entries and extract again")
    f.set_defaults(handler=_handler("avkd.features.extract:cmd_features"))

    b = sub.add_parser("bench", help="Table II: time per-video feature extraction for the teacher and each k")
    b.add_argument("--sweep", required=True, help="sweep YAML file")
    b.add_argument("--videos", type=int, default=None, help="number of test videos (default: from the sweep)")
    b.add_argument("--json", default=None, help="write the results to this JSON file")
    b.add_argument("--no-mlflow", action="store_true", help="do not log a timing run to MLflow")
    b.set_defaults(handler=_handler("avkd.sweep.timing:cmd_bench"))

    e = sub.add_parser("evaluate", help="score predicted captions against MSR-VTT-format references")
    e.add_argument("--refs", required=True, help="annotation JSON (MSR-VTT format)")
    e.add_argument("--preds", required=True, help='predictions JSON: [{"video_id": ..., "caption": ...}]')
    e.add_argument("--json", default=None, help="write the metrics to this JSON file")
    e.add_argument("--spice-jars", default=None, help="folder with the Stanford CoreNLP 3.6.0 jars for SPICE")
    e.set_defaults(handler=_handler("avkd.evaluation.metrics:cmd_evaluate"))

    w = sub.add_parser("sweep", help="run a sweep file end to end (features, trials, tables, report)")
    w.add_argument("sweep", help="sweep YAML file, e.g. sweeps/demo.yaml")
    w.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override any key of the sweep file (dotted path, YAML-typed value), e.g. "
        "training.epochs=3 'grid.ks=[0.2, 0.6]'; validated like the file, recorded in the sweep run",
    )
    w.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trial plan (which trials would run, which already FINISHED in MLflow) and exit: "
        "starts no Ray, writes no run",
    )
    w.add_argument("--no-report", action="store_true", help="skip building the HTML report at the end")
    w.add_argument("--report-out", default="reports/out", help="report folder (default: reports/out)")
    w.add_argument(
        "--wait",
        action="store_true",
        help="if this sweep is already running against the same tracking store, wait for it to end",
    )
    w.set_defaults(handler=_handler("avkd.sweep.driver:cmd_sweep"))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may follow options (`sweep F --dry-run a=1`): argparse leaves those over.
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) == "sweep" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args) or 0)
    except AvkdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
