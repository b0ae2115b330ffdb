"""`python -m avkd bench`: the Table II benchmark (avkd.features.bench) logged as an MLflow timing run.

The benchmark itself is core code and knows nothing of MLflow; this orchestration layer logs it.
"""

from __future__ import annotations

from avkd.config import load_sweep


def cmd_bench(args) -> int:
    """`python -m avkd bench --sweep X.yaml [--videos N] [--json F] [--no-mlflow]`."""
    from avkd.features import bench
    from avkd.sweep.driver import warn_other_sweeps

    warn_other_sweeps()
    result = bench.cmd_bench(args)
    if not args.no_mlflow:
        from trackers.mlflow_tracker import log_timing_run

        run_id = log_timing_run(load_sweep(args.sweep), result)
        bench.console.print(f"timing run logged to MLflow: {run_id}")
    return 0
