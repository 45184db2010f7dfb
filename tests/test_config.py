import pytest

from latentsweep.config import PRESETS, build_config, load_toml, parse_int_list
from latentsweep.errors import ConfigError


def test_defaults_are_the_full_study():
    config = build_config({})
    assert config.latent_dims == (5, 10, 15, 20) and config.seeds == (0,)
    assert config.preset == "full" and config.epochs == PRESETS["full"]["epochs"] and config.train_subset is None


def test_quick_preset_and_overrides():
    assert build_config({"preset": "quick"}).train_subset == PRESETS["quick"]["train_subset"]
    config = build_config({"preset": "quick", "epochs": "3", "latent_dims": "2, 4"})
    assert (config.epochs, config.latent_dims) == (3, (2, 4))


def test_toml_values_then_flags(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('latent-dims = [3, 6]\nepochs = 4\npreset = "quick"\nlearning_rate = 0.002\n')
    values = load_toml(path)
    values.update({"epochs": "7"})  # a flag given on the command line wins
    config = build_config(values)
    assert config.latent_dims == (3, 6) and config.epochs == 7 and config.learning_rate == 0.002
    assert config.train_subset == PRESETS["quick"]["train_subset"]


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
    ({"train_subset": "5"}, "--train-subset: must be at least 10"),
    ({"tolerance_db": "-1"}, "--tolerance-db: must be non-negative"),
])
def test_invalid_values_name_the_option(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_parse_int_list_accepts_lists_and_strings():
    assert parse_int_list("5, 10,15", "--x") == (5, 10, 15)
    assert parse_int_list([5, 10], "--x") == (5, 10)
    with pytest.raises(ConfigError):
        parse_int_list([True], "--x")
