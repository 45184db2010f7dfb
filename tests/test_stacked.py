"""Training the latent sizes of one seed as one stacked network (model.StackedConvVAE,
train.train_stacked, `latentsweep run --stack-sizes`) is training them one by one."""

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import SMALL_EVAL, cli, write_fake_dataset
from latentsweep.errors import TrainingDiverged
from latentsweep.model import ConvVAE, StackedConvVAE, VAEConfig
from latentsweep.train import (BEST_CHECKPOINT, LAST_CHECKPOINT, TrainConfig, load_checkpoint, train_model,
                               train_stacked)

SIZES = (2, 5, 3)  # unsorted, and the largest in the middle: padding must not depend on the order
CPU = torch.device("cpu")


def small(latent_dim: int) -> VAEConfig:
    return VAEConfig(latent_dim=latent_dim, conv_channels=(4, 8), hidden_dim=32)


@pytest.fixture
def images():
    return torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def members(seed: int = 0) -> list[ConvVAE]:
    models = []
    for latent_dim in SIZES:
        torch.manual_seed(seed + latent_dim)
        models.append(ConvVAE(small(latent_dim)))
    return models


def stack_of(models: list[ConvVAE]) -> StackedConvVAE:
    stack = StackedConvVAE([model.config for model in models])
    for member, model in enumerate(models):
        stack.load_member(member, dict(model.named_parameters()))
    return stack


@pytest.mark.parametrize("one_batch_per_member", [False, True])
def test_each_member_computes_what_its_own_model_computes(one_batch_per_member):
    models = members()
    stack = stack_of(models)
    batch = torch.rand(len(SIZES), 6, 1, 28, 28) if one_batch_per_member else torch.rand(6, 1, 28, 28)
    output = stack(batch, [torch.Generator().manual_seed(7) for _ in SIZES])
    for member, model in enumerate(models):
        alone = model(batch[member] if one_batch_per_member else batch, generator=torch.Generator().manual_seed(7))
        latent_dim = model.config.latent_dim
        torch.testing.assert_close(output.logits[member], alone.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(output.mean[member, :, :latent_dim], alone.mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(output.log_var[member, :, :latent_dim], alone.log_var, rtol=1e-5, atol=1e-6)
        # The padded latent slots are exactly zero: they add nothing to the KL term.
        assert not output.mean[member, :, latent_dim:].any() and not output.log_var[member, :, latent_dim:].any()


def test_padded_weights_get_exactly_zero_gradient_and_members_are_independent():
    stack = stack_of(members())
    batch = torch.rand(len(SIZES), 4, 1, 28, 28)
    batch[0] = float("nan")  # a poisoned member must not reach the others
    output = stack(batch, [torch.Generator().manual_seed(0) for _ in SIZES])
    output.logits[1:].sum().backward()  # as a diverged member's loss would be left out
    grads = {name: parameter.grad for name, parameter in stack.stacked_by_name().items()}
    for member in (1, 2):
        latent_dim = SIZES[member]
        assert not grads["encoder.7.weight"][member, :, latent_dim:].any()
        assert not grads["decoder.0.weight"][member, :, latent_dim:].any()
        assert all(torch.isfinite(grad[member]).all() for grad in grads.values())


def test_weights_round_trip_between_members_and_the_stack():
    models = members()
    stack = stack_of(models)
    for member, model in enumerate(models):
        back = stack.member_tensors(member)
        assert all(torch.equal(back[name], parameter) for name, parameter in model.named_parameters())
        assert ConvVAE(model.config).load_state_dict(back)  # shapes are the ConvVAE's own


def test_only_the_latent_size_may_differ():
    with pytest.raises(ValueError, match="differ in latent_dim only"):
        StackedConvVAE([VAEConfig(latent_dim=2), VAEConfig(latent_dim=3, hidden_dim=8)])
    with pytest.raises(ValueError, match="at least one"):
        StackedConvVAE([])


def separate_and_stacked(tmp_path: Path, images, train_config: TrainConfig):
    separate = [train_model(tmp_path / f"alone{d}", small(d), train_config, images[:160], images[160:], CPU)
                for d in SIZES]
    stacked = train_stacked([tmp_path / f"stack{d}" for d in SIZES], [small(d) for d in SIZES], train_config,
                            images[:160], images[160:], CPU)
    return separate, stacked


def assert_same_runs(tmp_path: Path, separate, stacked, rtol: float = 1e-5) -> None:
    for latent_dim, alone, together in zip(SIZES, separate, stacked):
        assert [row["epoch"] for row in alone.history] == [row["epoch"] for row in together.history]
        for key in ("train_loss", "train_kl", "val_loss", "val_kl"):
            assert [row[key] for row in together.history] == pytest.approx([row[key] for row in alone.history],
                                                                           rel=rtol), key
        assert alone.best_epoch == together.best_epoch
        first = load_checkpoint(tmp_path / f"alone{latent_dim}" / LAST_CHECKPOINT)
        second = load_checkpoint(tmp_path / f"stack{latent_dim}" / LAST_CHECKPOINT)
        assert first.keys() == second.keys()
        for name, tensor in first["model_state"].items():
            torch.testing.assert_close(second["model_state"][name], tensor, rtol=1e-4, atol=1e-5)
        for index, state in first["optimizer_state"]["state"].items():
            other = second["optimizer_state"]["state"][index]
            assert float(other["step"]) == float(state["step"])
            torch.testing.assert_close(other["exp_avg"], state["exp_avg"], rtol=1e-3, atol=1e-6)
        assert torch.equal(first["generator_state"], second["generator_state"])  # the same draws, in the same order
        assert (tmp_path / f"stack{latent_dim}" / BEST_CHECKPOINT).is_file()


@pytest.mark.parametrize("binarize", [False, True])
def test_stacked_training_gives_the_losses_and_weights_of_separate_training(tmp_path, images, binarize):
    separate, stacked = separate_and_stacked(tmp_path, images, TrainConfig(epochs=3, batch_size=32, seed=4,
                                                                          binarize=binarize))
    assert_same_runs(tmp_path, separate, stacked)


def test_stacked_bf16_training_matches_separate_bf16_training(tmp_path, images):
    separate, stacked = separate_and_stacked(tmp_path, images, TrainConfig(epochs=2, batch_size=32, precision="bf16"))
    assert_same_runs(tmp_path, separate, stacked, rtol=1e-3)


def test_a_stack_resumes_also_when_one_member_is_ahead(tmp_path, images):
    """As after a crash between two members' checkpoints: the member ahead waits for the others."""
    config = TrainConfig(epochs=3, batch_size=32)
    separate = [train_model(tmp_path / f"alone{d}", small(d), config, images[:160], images[160:], CPU) for d in SIZES]
    folders = [tmp_path / f"stack{d}" for d in SIZES]
    train_stacked(folders, [small(d) for d in SIZES], TrainConfig(epochs=1, batch_size=32), images[:160],
                  images[160:], CPU)
    train_model(folders[1], small(SIZES[1]), TrainConfig(epochs=2, batch_size=32), images[:160], images[160:], CPU)
    stacked = train_stacked(folders, [small(d) for d in SIZES], config, images[:160], images[160:], CPU)
    assert_same_runs(tmp_path, separate, stacked)


def test_a_diverging_member_leaves_the_stack_and_the_others_finish(tmp_path, images, monkeypatch):
    import latentsweep.train as train_module

    real = train_module.evaluate_loss

    def nan_for_latent_5(model, *args, **kwargs):
        terms = real(model, *args, **kwargs)
        return {**terms, "loss": math.nan} if model.config.latent_dim == 5 else terms

    monkeypatch.setattr(train_module, "evaluate_loss", nan_for_latent_5)
    outcomes = train_stacked([tmp_path / f"stack{d}" for d in SIZES], [small(d) for d in SIZES],
                             TrainConfig(epochs=2, batch_size=32), images[:160], images[160:], CPU)
    assert isinstance(outcomes[1], TrainingDiverged) and "epoch 1 (validation)" in str(outcomes[1])
    assert not (tmp_path / "stack5" / LAST_CHECKPOINT).exists()
    assert [len(outcomes[i].history) for i in (0, 2)] == [2, 2]


def test_run_with_stack_sizes_matches_the_default_run(tmp_path):
    data = write_fake_dataset(tmp_path / "data", train=400, test=100)
    common = ["run", "--data-dir", str(data), "--no-verify-data", "--latent-dims", "2,3", "--seeds", "0,1",
              "--epochs", "2", "--val-size", "100", *SMALL_EVAL]
    assert cli(*common, "--out", str(tmp_path / "alone")).returncode == 0
    result = cli(*common, "--out", str(tmp_path / "stacked"), "--stack-sizes")
    assert result.returncode == 0, result.stderr
    alone = json.loads((tmp_path / "alone" / "results.json").read_text())
    stacked = json.loads((tmp_path / "stacked" / "results.json").read_text())
    assert len(alone) == len(stacked) > 0
    for first, second in zip(alone, stacked):
        assert {k: v for k, v in first.items() if k not in ("mean", "ci_low", "ci_high")} == \
               {k: v for k, v in second.items() if k not in ("mean", "ci_low", "ci_high")}
        assert second["mean"] == pytest.approx(first["mean"], rel=1e-3, abs=1e-4), first
    for trial in ("latent002_seed0", "latent003_seed1"):
        assert (tmp_path / "stacked" / "models" / trial / "DONE").is_file()
        config = json.loads((tmp_path / "stacked" / "models" / trial / "config.json").read_text())
        assert config["study"]["stack_sizes"] is True


def test_a_stacked_study_killed_while_checkpointing_resumes_to_bit_identical_models(tmp_path):
    """SIGKILL halfway through writing epoch 2's last.pt (the reliability tests' fault hook), run again:
    the stack is rebuilt from the members' checkpoints and ends with the uninterrupted run's weights."""
    import signal

    from latentsweep.train import FAULT_KILL_IN_CHECKPOINT, state_dict_sha256

    data = write_fake_dataset(tmp_path / "data", train=300, test=100)
    common = ["-q", "run", "--data-dir", str(data), "--no-verify-data", "--latent-dims", "2,3,4", "--epochs", "3",
              "--val-size", "100", "--stack-sizes", *SMALL_EVAL]
    assert cli(*common, "--out", str(tmp_path / "straight")).returncode == 0
    killed = cli(*common, "--out", str(tmp_path / "resumed"), env={FAULT_KILL_IN_CHECKPOINT: "2"})
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "resumed" / "models" / "latent002_seed0" / LAST_CHECKPOINT)["epoch"] == 1
    resumed = cli(*common, "--out", str(tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr
    for trial in ("latent002_seed0", "latent003_seed0", "latent004_seed0"):
        hashes = [state_dict_sha256(load_checkpoint(tmp_path / run / "models" / trial / LAST_CHECKPOINT)["model_state"])
                  for run in ("straight", "resumed")]
        assert hashes[0] == hashes[1], trial
    assert (tmp_path / "straight" / "results.csv").read_text() == (tmp_path / "resumed" / "results.csv").read_text()


def test_stack_sizes_is_refused_with_dask(tmp_path):
    result = cli("run", "--out", str(tmp_path / "s"), "--stack-sizes", "--executor", "dask")
    assert result.returncode != 0
    assert "--stack-sizes" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
def test_stacked_training_matches_separate_training_on_cuda(tmp_path, images):
    cuda = torch.device("cuda")
    config = TrainConfig(epochs=2, batch_size=32)
    separate = [train_model(tmp_path / f"alone{d}", small(d), config, images[:160], images[160:], cuda) for d in SIZES]
    stacked = train_stacked([tmp_path / f"stack{d}" for d in SIZES], [small(d) for d in SIZES], config,
                            images[:160], images[160:], cuda)
    assert_same_runs(tmp_path, separate, stacked, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
def test_a_stacked_cuda_epoch_never_waits_for_the_gpu_inside_its_loop(images):
    from conftest import cuda_synchronisations
    from latentsweep.train import train_stacked_epoch

    cuda = torch.device("cuda")
    stack = stack_of(members()).to(cuda)
    optimizer = torch.optim.Adam(stack.parameters(), lr=1e-3)
    generators = [torch.Generator(device=cuda).manual_seed(0) for _ in SIZES]
    data = images.to(cuda)

    def epoch(steps: int):
        return lambda: train_stacked_epoch(stack, optimizer, data, torch.arange(8 * steps), 8, 1.0, generators)

    epoch(2)()
    assert cuda_synchronisations(epoch(2)) == cuda_synchronisations(epoch(8))
