"""Credentials never reach MLflow params, tags or printed output."""

from __future__ import annotations

from intent_mlops.config.params import load_config
from intent_mlops.config.redact import MASK, redact, redact_mapping
from intent_mlops.registry.tracking import run_params


def test_uri_user_info_is_masked() -> None:
    assert redact("postgresql://bob:s3cret@db:5432/mlflow") == f"postgresql://{MASK}@db:5432/mlflow"
    assert redact("https://token@host/x and s3://bucket/key") == f"https://{MASK}@host/x and s3://bucket/key"
    assert redact("sqlite:////tmp/mlruns/mlflow.db") == "sqlite:////tmp/mlruns/mlflow.db"


def test_secret_assignments_and_keys_are_masked() -> None:
    assert "hunter2" not in redact("connect with password=hunter2 now")
    assert "abc123" not in redact("PREFECT_API_AUTH_STRING: admin:abc123")
    masked = redact_mapping({"api_token": "abc", "data.md5": "0f3a.dir", "note": "aws_secret_access_key=XYZ"})
    assert masked == {"api_token": MASK, "data.md5": "0f3a.dir", "note": f"aws_secret_access_key={MASK}"}


def test_run_params_hide_a_tracking_uri_password() -> None:
    cfg = load_config(None, {"mlflow": {"tracking_uri": "postgresql://mlflow:s3cret-pw@db.internal/mlflow"}})
    params = run_params(cfg)
    assert "s3cret-pw" not in " ".join(params.values())
    assert params["mlflow.tracking_uri"] == f"postgresql://{MASK}@db.internal/mlflow"
    assert params["train.epochs"] == str(cfg.train.epochs)
