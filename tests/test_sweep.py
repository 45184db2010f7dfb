import json

import pytest

from conftest import write_fake_dataset
from latentsweep.config import build_config
from latentsweep.errors import ConfigError
from latentsweep.sweep import Trial, plan_trials, prepare_study_dir, run_study


def test_plan_is_every_latent_size_and_seed_in_order():
    config = build_config({"latent_dims": "10,5", "seeds": "0,1"})
    assert plan_trials(config) == [Trial(5, 0), Trial(5, 1), Trial(10, 0), Trial(10, 1)]
    assert Trial(5, 1).name == "latent005_seed1"


def test_study_folder_problems_are_config_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        prepare_study_dir(tmp_path / "file", build_config({}))


def test_a_diverging_model_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """A NaN loss in one trial marks it failed; the other trial finishes and the report says so."""
    data = write_fake_dataset(tmp_path / "data", train=200, test=60)
    import latentsweep.train as train_module

    real_evaluate_loss = train_module.evaluate_loss

    def nan_for_latent_3(model, images, batch_size, beta, seed):
        terms = real_evaluate_loss(model, images, batch_size, beta, seed)
        return {**terms, "loss": float("nan")} if model.config.latent_dim == 3 else terms

    monkeypatch.setattr(train_module, "evaluate_loss", nan_for_latent_3)
    config = build_config({"data_dir": str(data), "verify_data": False, "out": str(tmp_path / "study"),
                           "latent_dims": "2,3", "epochs": "1", "val_size": "50", "num_samples": "4",
                           "representatives_per_class": "2"})
    result = run_study(config)
    assert [t["status"] for t in result["trials"]] == ["done", "failed"]
    failed = json.loads((tmp_path / "study" / "models" / "latent003_seed0" / "metrics.json").read_text())
    assert failed["status"] == "failed" and "epoch 1" in failed["error"]
    assert (tmp_path / "study" / "models" / "latent003_seed0" / "FAILED").is_file()
    report = (tmp_path / "study" / "report.md").read_text()
    assert "Failed or missing models" in report and "latent size 3, seed 0: failed" in report
