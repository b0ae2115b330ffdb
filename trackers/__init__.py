"""MLflow tracking for avkd (schema.py is the contract)."""

import os as _os

# MLflow's telemetry writes ~/.config/mlflow/telemetry.json and tries to phone home: off.
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
