import pytest

import dataclasses

from latentsweep.config import PRESETS, SECTIONS, StudyConfig, build_config, coerce, from_dict, load_toml
from latentsweep.errors import ConfigError


def test_defaults_are_the_full_study():
    config = build_config({})
    assert config.model.latent_dims == (5, 10, 15, 20) and config.training.seeds == (0, 1, 2)
    assert config.training.schedule == "cosine" and config.training.batch_size == PRESETS["full"]["batch_size"]
    assert config.model.architecture == ("conv",) and config.training.betas == (1.0,)
    assert config.preset == "full" and config.training.epochs == PRESETS["full"]["epochs"] and config.data.train_subset is None


def test_quick_preset_and_overrides():
    assert build_config({"preset": "quick"}).data.train_subset == PRESETS["quick"]["train_subset"]
    config = build_config({"preset": "quick", "epochs": "3", "latent_dims": "2, 4", "betas": "0.5,4"})
    assert (config.training.epochs, config.model.latent_dims, config.training.betas) == (3, (2, 4), (0.5, 4.0))


def test_toml_values_then_flags(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('latent-dims = [3, 6]\nepochs = 4\npreset = "quick"\nlearning_rate = 0.002\n')
    values = load_toml(path)
    values.update({"epochs": "7"})  # a flag given on the command line wins
    config = build_config(values)
    assert config.model.latent_dims == (3, 6) and config.training.epochs == 7 and config.training.learning_rate == 0.002
    assert config.data.train_subset == PRESETS["quick"]["train_subset"]


def test_toml_tables_named_after_the_sections(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('[training]\nepochs = 4\nbetas = [1, 4]\n[model]\narchitecture = ["conv", "mlp"]\n')
    config = build_config(load_toml(path))
    assert config.training.epochs == 4 and config.training.betas == (1.0, 4.0)
    assert config.model.architecture == ("conv", "mlp")
    path.write_text('[training]\nlatent_dims = [2]\n')
    with pytest.raises(ConfigError, match=r"\[training\] has no key 'latent_dims'"):
        load_toml(path)


def test_config_round_trips_through_json_and_only_non_axis_settings_define_a_model():
    config = build_config({"betas": "1,4", "seeds": "0,1", "epochs": "3", "tolerance_db": "0.3"})
    assert from_dict(config.to_dict()) == config
    trained = config.trained_model_settings()
    assert trained["epochs"] == 3 and "betas" not in trained and "seeds" not in trained
    assert "tolerance_db" not in trained and "threads" not in trained  # selection and execution change no model
    assert config.replace(betas=(2.0,)).trained_model_settings() == trained  # a new beta is new trials


def test_every_annotation_has_a_parser():
    """The field types drive parsing: each field of each section takes its default's text form."""
    import typing

    for cls in SECTIONS.values():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            value = field.default
            text = ",".join(map(str, value)) if isinstance(value, tuple) else value
            assert coerce(text, hints[field.name], field.name) == value, field.name


@pytest.mark.parametrize("text, message", [
    ('colour = "red"\n', r"unknown key\(s\) colour"),
    ("epochs = \n", "invalid TOML"),
])
def test_bad_toml_is_reported_with_the_file_name(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"bad.toml: {message}"):
        load_toml(path)


def test_missing_toml_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_toml(tmp_path / "nope.toml")


@pytest.mark.parametrize("values, message", [
    ({"latent_dims": "0,5"}, "--latent-dims: every latent size must be at least 1"),
    ({"latent_dims": "-3"}, "--latent-dims: every latent size must be at least 1"),
    ({"latent_dims": ""}, "--latent-dims: needs at least one value"),
    ({"latent_dims": " , "}, "--latent-dims: needs at least one value"),
    ({"latent_dims": "5,x"}, "--latent-dims: 'x' is not an integer"),
    ({"latent_dims": "5,5"}, "--latent-dims: repeated value"),
    ({"seeds": "-1"}, "--seeds: seeds must be non-negative"),
    ({"epochs": "ten"}, "--epochs: 'ten' is not an integer"),
    ({"epochs": "0"}, "--epochs: must be at least 1"),
    ({"epochs": 2.5}, "--epochs: 2.5 is not an integer"),
    ({"learning_rate": "fast"}, "--learning-rate: 'fast' is not a number"),
    ({"learning_rate": "-1"}, "--learning-rate: must be positive"),
    ({"batch_size": "0"}, "--batch-size: must be at least 1"),
    ({"preset": "huge"}, "--preset: unknown preset 'huge'"),
    ({"dataset": "cifar"}, "--dataset: unknown data set 'cifar'"),
    ({"device": "tpu"}, "--device: 'tpu' is not one of"),
    ({"train_subset": "0"}, "--train-subset: must be at least 1"),
    ({"tolerance_db": "-1"}, "--tolerance-db: must be non-negative"),
    ({"betas": "1,-2"}, "--betas: every beta must be non-negative"),
    ({"betas": "1,1.0"}, "--betas: repeated value"),
    ({"architecture": "resnet"}, "--architecture: 'resnet' is neither conv nor mlp nor a builder"),
    ({"architecture": "conv,conv"}, "--architecture: repeated value"),
    ({"verify_data": "yes"}, "--verify-data: 'yes' is not true or false"),
])
def test_invalid_values_name_the_option(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_lists_accept_strings_and_toml_lists_and_refuse_booleans():
    assert coerce("5, 10,15", tuple[int, ...], "latent_dims") == (5, 10, 15)
    assert coerce([5, 10], tuple[int, ...], "latent_dims") == (5, 10)
    with pytest.raises(ConfigError, match="--latent-dims: True is not an integer"):
        coerce([True], tuple[int, ...], "latent_dims")


def test_a_field_missing_from_an_older_config_json_takes_its_dataclass_default_not_the_presets():
    """Written before the schedule existed: read back with the constant rate it was trained at."""
    older = build_config({}).to_dict()
    del older["training"]["schedule"], older["training"]["warmup_fraction"]
    read = from_dict(older)
    assert read.training.schedule == "constant" and read.training.warmup_fraction == 0.0
    assert from_dict(build_config({"schedule": "cosine", "warmup_fraction": 0.1}).to_dict()).training.schedule == "cosine"


def test_choosing_the_constant_rate_drops_the_presets_warm_up_but_not_an_explicit_one():
    assert build_config({"schedule": "constant"}).training.warmup_fraction == 0.0
    with pytest.raises(ConfigError, match="--warmup-fraction: only used with --schedule cosine"):
        build_config({"schedule": "constant", "warmup_fraction": 0.1})
