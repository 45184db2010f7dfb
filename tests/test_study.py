import dataclasses
import json

import pytest

from conftest import write_fake_dataset
from latentsweep.config import AXES, StudyConfig, build_config, flat_values
from latentsweep.errors import ConfigError, LatentsweepError
from latentsweep.layout import Trial, plan_trials, prepare_study_dir, variant_name, variant_slug
from latentsweep.metrics import combine_seeds, variants
from latentsweep.study import execute


def test_plan_is_every_latent_size_and_seed_in_order():
    config = build_config({"latent_dims": "10,5", "seeds": "0,1", "betas": "4,1", "architecture": "mlp,conv"})
    trials = plan_trials(config)
    assert trials[:4] == [Trial("mlp", 4.0, 5, 0), Trial("mlp", 4.0, 5, 1), Trial("mlp", 4.0, 10, 0), Trial("mlp", 4.0, 10, 1)]
    assert len(trials) == 16 and trials[-1] == Trial("conv", 1.0, 10, 1)
    assert Trial("conv", 1.0, 5, 1).name == "conv_beta1_latent005_seed1"
    assert Trial("my.pkg:build", 0.5, 20, 0).name == "my.pkg-build_beta0.5_latent020_seed0"



def test_the_axes_specification_is_what_trials_settings_and_variants_follow():
    assert [f.name for f in dataclasses.fields(Trial)] == [axis.name for axis in AXES]
    defaults = flat_values(StudyConfig())
    assert [defaults[axis.option] for axis in AXES] == [axis.default for axis in AXES]
    assert defaults["latent_dims"] == (5, 10, 15, 20) and defaults["architecture"] == ("conv",)
    variant = Trial("my.pkg:build", 0.5, 20, 0).variant
    assert variant == ("my.pkg:build", 0.5)
    assert variant_name(variant) == "architecture my.pkg:build, beta 0.5" and variant_slug(variant) == "my.pkg-build_beta0.5"


def test_rows_written_before_the_architecture_and_beta_axes_existed_are_conv_at_beta_1():
    old = {"latent_dim": 5, "seed": 0, "protocol": "test_set", "class": "all", "metric": "psnr", "mean": 20.0,
           "ci_low": 19.0, "ci_high": 21.0, "n": 10}
    new = {**old, "architecture": "conv", "beta": 1.0, "seed": 1, "mean": 22.0}
    (combined,) = combine_seeds([old, new])
    assert (combined["architecture"], combined["beta"], combined["n"], combined["mean"]) == ("conv", 1.0, 2, 21.0)
    assert variants([old]) == [("conv", 1.0)]

def test_study_folder_problems_are_config_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        prepare_study_dir(tmp_path / "file", build_config({}))


def test_a_diverging_model_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch, caplog):
    """A NaN loss in one trial marks it failed; the other trial finishes and the report says so.
    A page that cannot be written (here: refused) is a warning and costs neither the report nor the results."""
    data = write_fake_dataset(tmp_path / "data", train=200, test=60)
    import latentsweep.train as train_module

    real_evaluate_loss = train_module.evaluate_loss

    def nan_for_latent_3(model, images, batch_size, beta, seed, *rest):
        terms = real_evaluate_loss(model, images, batch_size, beta, seed, *rest)
        return {**terms, "loss": float("nan")} if model.config.latent_dim == 3 else terms

    monkeypatch.setattr(train_module, "evaluate_loss", nan_for_latent_3)
    import latentsweep.explorer as explorer_module

    def refuse_explorer(study_dir):
        raise LatentsweepError(f"{study_dir}: the page would be too large")

    monkeypatch.setattr(explorer_module, "write_explorer", refuse_explorer)
    config = build_config({"data_dir": str(data), "verify_data": False, "out": str(tmp_path / "study"),
                           "latent_dims": "2,3", "seeds": "0", "epochs": "1", "val_size": "50", "num_samples": "4",
                           "representatives_per_class": "2", "workers": 1, "refine": False,
                           "check_training": False, "extend": False})  # in this process, so the patch applies
    prepare_study_dir(config.out, config)
    result = execute(config)
    assert [t["status"] for t in result["trials"]] == ["done", "failed"]
    failed = json.loads((tmp_path / "study" / "models" / "conv_beta1_latent003_seed0" / "metrics.json").read_text())
    assert failed["status"] == "failed" and "epoch 1" in failed["error"]
    assert (tmp_path / "study" / "models" / "conv_beta1_latent003_seed0" / "FAILED").is_file()
    report = (tmp_path / "study" / "report.md").read_text()
    assert "Failed, excluded or missing models" in report and "latent size 3, seed 0: failed" in report
    assert "explorer.html" not in report and not (tmp_path / "study" / "explorer.html").exists()
    assert "explorer.html not written" in caplog.text and "too large" in caplog.text
