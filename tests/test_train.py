import math
from pathlib import Path

import pytest
import torch

from latentsweep.architectures import ModelSpec, model_from_checkpoint as rebuild, register_builder
from latentsweep.errors import CheckpointError, TrainingDiverged
from latentsweep.model import MNIST_SHAPE, ConvVAE, VAEConfig
from latentsweep.storage import state_dict_sha256
from latentsweep.train import (BEST_CHECKPOINT, HISTORY_FILE, LAST_CHECKPOINT, TrainConfig, epoch_permutation,
                               evaluate_loss, learning_rate_at, load_checkpoint, train_epoch,
                               train_model)

SMALL_CONFIG = VAEConfig(latent_dim=3, conv_channels=(4, 8), hidden_dim=16)


def small_conv(latent_dim, image_shape):
    """A narrow ConvVAE that trains in milliseconds, handed over as a user's builder."""
    return ConvVAE(VAEConfig(latent_dim=latent_dim, conv_channels=(4, 8), hidden_dim=16))


SMALL = ModelSpec(register_builder(small_conv), 3, MNIST_SHAPE)


def model_from_checkpoint(checkpoint, source):
    return rebuild(checkpoint, source, trusted=[SMALL.architecture])[0]
CPU = torch.device("cpu")


@pytest.fixture
def images():
    return torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_the_state_hash_sees_a_change_in_a_single_element():
    model = ConvVAE(SMALL_CONFIG)
    before = state_dict_sha256(model.state_dict())
    with torch.no_grad():
        model.decoder[0].bias[0] += 1e-6
    assert state_dict_sha256(model.state_dict()) != before
    assert len(before) == 64


def test_a_train_step_changes_every_weight(images):
    torch.manual_seed(0)
    model = ConvVAE(SMALL_CONFIG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_epoch(model, optimizer, images, torch.arange(16), 16, 1.0, torch.Generator().manual_seed(0))
    for name, tensor in model.state_dict().items():
        assert not torch.equal(tensor, before[name]), name


def test_an_evaluation_step_changes_nothing(images):
    model = ConvVAE(SMALL_CONFIG)
    before = state_dict_sha256(model.state_dict())
    first = evaluate_loss(model, images, 16, 1.0, seed=0)
    assert state_dict_sha256(model.state_dict()) == before
    assert evaluate_loss(model, images, 16, 1.0, seed=0) == first  # fixed noise: repeatable
    assert all(p.grad is None for p in model.parameters())


def test_batch_order_is_a_pure_function_of_seed_and_epoch():
    assert torch.equal(epoch_permutation(100, 3, 2), epoch_permutation(100, 3, 2))
    assert not torch.equal(epoch_permutation(100, 3, 2), epoch_permutation(100, 3, 3))
    assert not torch.equal(epoch_permutation(100, 3, 2), epoch_permutation(100, 4, 2))
    assert sorted(epoch_permutation(100, 0, 1).tolist()) == list(range(100))


def _train(folder: Path, images, epochs: int, seed: int = 0, resume: bool = True):
    return train_model(folder, SMALL, TrainConfig(epochs=epochs, batch_size=16, seed=seed),
                       images[:48], images[48:], CPU, resume=resume)


def test_training_writes_history_and_checkpoints_and_loss_falls(tmp_path, images):
    result = _train(tmp_path / "run", images, epochs=3)
    assert (tmp_path / "run" / LAST_CHECKPOINT).is_file() and (tmp_path / "run" / BEST_CHECKPOINT).is_file()
    lines = (tmp_path / "run" / HISTORY_FILE).read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,train_reconstruction,train_kl,val_loss")
    assert len(lines) == 4
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    checkpoint = load_checkpoint(tmp_path / "run" / LAST_CHECKPOINT)
    assert checkpoint["epoch"] == 3 and checkpoint["model_config"]["latent_dim"] == 3
    rebuilt = model_from_checkpoint(checkpoint, "x")  # the nanoGPT way: Model(Config(**ckpt["model_config"]))
    assert state_dict_sha256(rebuilt.state_dict()) == state_dict_sha256(checkpoint["model_state"])
    best = load_checkpoint(tmp_path / "run" / BEST_CHECKPOINT)
    assert best["epoch"] == result.best_epoch
    assert best["val_loss"] == min(row["val_loss"] for row in result.history)


def test_the_same_seed_gives_identical_weights_and_another_seed_does_not(tmp_path, images):
    a = _train(tmp_path / "a", images, 2, seed=1)
    b = _train(tmp_path / "b", images, 2, seed=1)
    c = _train(tmp_path / "c", images, 2, seed=2)
    assert state_dict_sha256(load_checkpoint(tmp_path / "a" / LAST_CHECKPOINT)["model_state"]) == \
        state_dict_sha256(load_checkpoint(tmp_path / "b" / LAST_CHECKPOINT)["model_state"])
    def losses(history):
        return [{key: value for key, value in row.items() if key != "seconds"} for row in history]

    assert losses(a.history) == losses(b.history) and len(a.history) == 2
    assert losses(a.history) != losses(c.history)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert [r["train_loss"] for r in a.history] != [r["train_loss"] for r in c.history]


def test_resuming_an_interrupted_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, images):
    _train(tmp_path / "straight", images, epochs=3)
    _train(tmp_path / "interrupted", images, epochs=1)  # as if killed after epoch 1's checkpoint
    resumed = _train(tmp_path / "interrupted", images, epochs=3, resume=True)
    straight = load_checkpoint(tmp_path / "straight" / LAST_CHECKPOINT)
    continued = load_checkpoint(tmp_path / "interrupted" / LAST_CHECKPOINT)
    assert state_dict_sha256(straight["model_state"]) == state_dict_sha256(continued["model_state"])
    assert [r["val_loss"] for r in straight["history"]] == [r["val_loss"] for r in resumed.history]


def test_resuming_with_other_settings_is_refused(tmp_path, images):
    _train(tmp_path / "run", images, epochs=1)
    with pytest.raises(CheckpointError, match="other training settings"):
        train_model(tmp_path / "run", SMALL, TrainConfig(epochs=2, batch_size=8), images[:48], images[48:], CPU)
    with pytest.raises(CheckpointError, match="another model"):
        train_model(tmp_path / "run", ModelSpec(SMALL.architecture, 4, MNIST_SHAPE),
                    TrainConfig(epochs=2, batch_size=16), images[:48], images[48:], CPU)


def test_a_checkpoint_written_before_image_width_existed_still_resumes(tmp_path, images):
    """Built-in conv checkpoints of earlier versions store no image_width: they are 28x28 and resume as such."""
    spec, config = ModelSpec("conv", 2, MNIST_SHAPE), TrainConfig(epochs=1, batch_size=16)
    train_model(tmp_path / "run", spec, config, images[:48], images[48:], CPU)
    checkpoint = torch.load(tmp_path / "run" / LAST_CHECKPOINT, weights_only=True)
    assert checkpoint["model_config"].pop("image_width") == 28
    torch.save(checkpoint, tmp_path / "run" / LAST_CHECKPOINT)
    resumed = train_model(tmp_path / "run", spec, TrainConfig(epochs=2, batch_size=16), images[:48], images[48:], CPU,
                          resume=True)
    assert len(resumed.history) == 2


# --- The learning-rate schedule ----------------------------------------------------------------

def test_the_cosine_schedule_has_known_values():
    """10 steps, warm-up 0.2 (2 steps): peak/2, peak, then peak * (1 + cos(pi * k / 8)) / 2 for k = 0..7."""
    rates = [learning_rate_at(step, 10, 0.004, "cosine", 0.2) for step in range(10)]
    assert rates[:3] == pytest.approx([0.002, 0.004, 0.004])
    assert rates[6] == pytest.approx(0.002)  # half-way down the cosine
    assert rates[9] == pytest.approx(0.004 * (1 + math.cos(7 * math.pi / 8)) / 2)  # 0.000152, not yet zero
    assert all(a > b for a, b in zip(rates[2:], rates[3:]))
    assert learning_rate_at(0, 10, 0.004, "cosine", 0.0) == 0.004  # no warm-up: the peak at once
    assert {learning_rate_at(step, 10, 0.001, "constant") for step in range(10)} == {0.001}
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        learning_rate_at(0, 10, 0.001, "linear")


def test_train_epoch_sets_each_steps_learning_rate(images):
    torch.manual_seed(0)
    model = ConvVAE(SMALL_CONFIG)
    before = state_dict_sha256(model.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_epoch(model, optimizer, images, torch.arange(32), 16, 1.0, torch.Generator().manual_seed(0),
                learning_rates=[0.0, 0.0])
    assert state_dict_sha256(model.state_dict()) == before  # a zero rate moves nothing
    train_epoch(model, optimizer, images, torch.arange(32), 16, 1.0, torch.Generator().manual_seed(0),
                learning_rates=[0.0, 0.002])
    assert state_dict_sha256(model.state_dict()) != before and optimizer.param_groups[0]["lr"] == 0.002


COSINE = dict(schedule="cosine", warmup_fraction=0.25, learning_rate=3e-3)


class Interrupted(Exception):
    pass


def stop_after(epoch: int):
    """An on_epoch_end hook that stops training once `epoch`'s checkpoint is written, as a kill would."""
    def hook(row, model):
        if row["epoch"] == epoch:
            raise Interrupted
    return hook


def test_a_run_stopped_mid_schedule_resumes_bit_identical(tmp_path, images):
    config = TrainConfig(epochs=3, batch_size=16, **COSINE)
    straight = train_model(tmp_path / "straight", SMALL, config, images[:48], images[48:], CPU)
    with pytest.raises(Interrupted):
        train_model(tmp_path / "stopped", SMALL, config, images[:48], images[48:], CPU, on_epoch_end=stop_after(1))
    assert load_checkpoint(tmp_path / "stopped" / LAST_CHECKPOINT)["schedule_state"] == {"steps_done": 3, "total_steps": 9}
    resumed = train_model(tmp_path / "stopped", SMALL, config, images[:48], images[48:], CPU)
    assert state_dict_sha256(load_checkpoint(tmp_path / "stopped" / LAST_CHECKPOINT)["model_state"]) == \
        state_dict_sha256(load_checkpoint(tmp_path / "straight" / LAST_CHECKPOINT)["model_state"])
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]
    # The schedule changed the training: the same run at a constant rate ends elsewhere.
    constant = train_model(tmp_path / "constant", SMALL, TrainConfig(epochs=3, batch_size=16, learning_rate=3e-3),
                           images[:48], images[48:], CPU)
    assert [r["val_loss"] for r in constant.history] != [r["val_loss"] for r in straight.history]


def test_a_scheduled_run_is_not_continued_to_another_length_or_on_other_images(tmp_path, images):
    with pytest.raises(Interrupted):
        train_model(tmp_path, SMALL, TrainConfig(epochs=3, batch_size=16, **COSINE), images[:48], images[48:], CPU,
                    on_epoch_end=stop_after(1))
    with pytest.raises(CheckpointError, match="made for 3 epochs; the cosine schedule's rates depend on the run's length"):
        train_model(tmp_path, SMALL, TrainConfig(epochs=4, batch_size=16, **COSINE), images[:48], images[48:], CPU)
    with pytest.raises(CheckpointError, match="took 3 of 9 steps, but 1 epochs of these training images make 2 of 6"):
        train_model(tmp_path, SMALL, TrainConfig(epochs=3, batch_size=16, **COSINE), images[:32], images[48:], CPU)


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("good") / "run"
    train_model(folder, SMALL, TrainConfig(epochs=1, batch_size=16), torch.rand(64, 1, 28, 28)[:48],
                torch.rand(16, 1, 28, 28), CPU)
    return (folder / LAST_CHECKPOINT).read_bytes()


def _foreign(tmp_path):
    torch.save({"something": 1}, tmp_path / "bad.pt")


# The one place load_checkpoint's damage cases are tested; the commands that load one (train --resume, sample,
# evaluate, likelihood) all go through it, and test_cli checks that one of them prints the error on one line.
@pytest.mark.parametrize("damage, message", [
    (lambda good, folder: (folder / "bad.pt").write_bytes(b""), "not a readable checkpoint"),
    (lambda good, folder: (folder / "bad.pt").write_bytes(b"garbage" * 100), "not a readable checkpoint"),
    (lambda good, folder: (folder / "bad.pt").write_bytes(good[: len(good) // 2]), "not a readable checkpoint"),
    (lambda good, folder: _foreign(folder), "not a latentsweep checkpoint"),
    (lambda good, folder: None, "checkpoint not found"),
], ids=["empty", "garbage", "truncated", "foreign", "missing"])
def test_damaged_checkpoints_are_one_line_errors_naming_the_file(tmp_path, good_checkpoint, damage, message):
    damage(good_checkpoint, tmp_path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert str(info.value).startswith(f"{tmp_path / 'bad.pt'}: ") and "\n" not in str(info.value)


def test_weights_that_do_not_fit_their_model_config_are_refused(tmp_path, images):
    _train(tmp_path / "run", images, epochs=1)
    checkpoint = load_checkpoint(tmp_path / "run" / LAST_CHECKPOINT)
    checkpoint["model_config"]["latent_dim"] = 9
    with pytest.raises(CheckpointError, match="weights do not fit the model config"):
        model_from_checkpoint(checkpoint, "other.pt")


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, images):
    _train(tmp_path / "run", images, epochs=1)
    good = state_dict_sha256(load_checkpoint(tmp_path / "run" / LAST_CHECKPOINT)["model_state"])
    poisoned = images.clone()
    order = epoch_permutation(48, 0, 2)  # where image 0 falls in epoch 2 decides the step named
    bad_step = int((order == 0).nonzero()) // 16 + 1
    poisoned[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match=f"NaN or infinite in epoch 2, step {bad_step};"):
        train_model(tmp_path / "run", SMALL, TrainConfig(epochs=2, batch_size=16), poisoned[:48], poisoned[48:], CPU)
    assert state_dict_sha256(load_checkpoint(tmp_path / "run" / LAST_CHECKPOINT)["model_state"]) == good


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the refusal cannot be shown here")
def test_asking_for_cuda_without_it_is_a_config_error():
    from latentsweep.errors import ConfigError
    from latentsweep.train import resolve_device

    with pytest.raises(ConfigError, match="--device cuda: no CUDA device is available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
def test_training_and_evaluation_run_on_cuda_and_resume_bit_identical(tmp_path, images):
    from latentsweep.evaluate import evaluate_model

    cuda = torch.device("cuda")
    straight = train_model(tmp_path / "a", SMALL, TrainConfig(epochs=2, batch_size=16), images[:48], images[48:], cuda)
    train_model(tmp_path / "b", SMALL, TrainConfig(epochs=1, batch_size=16), images[:48], images[48:], cuda)
    resumed = train_model(tmp_path / "b", SMALL, TrainConfig(epochs=2, batch_size=16), images[:48], images[48:], cuda)
    assert [r["val_loss"] for r in straight.history] == [r["val_loss"] for r in resumed.history]
    model = model_from_checkpoint(load_checkpoint(tmp_path / "a" / BEST_CHECKPOINT, map_location=cuda), "a").to(cuda)
    evaluation = evaluate_model(model, images, torch.arange(64) % 10, 3, 0, per_class=2, num_samples=4)
    assert all(math.isfinite(row["mean"]) for row in evaluation.rows)


def test_bf16_autocast_trains_close_to_fp32_but_not_identically(images):
    losses, weights = {}, {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = ConvVAE(SMALL_CONFIG)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        result = train_epoch(model, optimizer, images, torch.arange(64), 16, 1.0, torch.Generator().manual_seed(0),
                             precision=precision)
        losses[precision], weights[precision] = result["loss"], state_dict_sha256(model.state_dict())
        assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert weights["bf16"] != weights["fp32"], "autocast was not active"
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.01)


def test_a_checkpoint_is_not_resumed_at_another_precision(tmp_path, images):
    train_model(tmp_path, SMALL, TrainConfig(epochs=1, batch_size=16), images[:48], images[48:], CPU)
    with pytest.raises(CheckpointError, match="other training settings"):
        train_model(tmp_path, SMALL, TrainConfig(epochs=2, batch_size=16, precision="bf16"), images[:48], images[48:], CPU)


@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
                    reason="needs a CUDA device with bf16 (CI has none)")
def test_bf16_on_cuda_keeps_test_psnr_within_a_tenth_of_a_db_of_fp32(tmp_path):
    """The issue's criterion on a small real-looking problem: the same model trained both ways."""
    from latentsweep.evaluate import per_image_scores

    cuda = torch.device("cuda")
    generator = torch.Generator().manual_seed(0)
    blobs = torch.zeros(2048, 1, 28, 28)
    for i in range(len(blobs)):  # a bright square somewhere: learnable, not trivial
        y, x = torch.randint(0, 20, (2,), generator=generator).tolist()
        blobs[i, 0, y:y + 8, x:x + 8] = 1.0
    psnr = {}
    for precision in ("fp32", "bf16"):
        train_model(tmp_path / precision, SMALL, TrainConfig(epochs=3, batch_size=64, precision=precision),
                    blobs[:1536], blobs[1536:1792], cuda)
        model = model_from_checkpoint(load_checkpoint(tmp_path / precision / BEST_CHECKPOINT, map_location=cuda), "m")
        psnr[precision] = float(per_image_scores(model.to(cuda), blobs[1792:].to(cuda), 256, 0)["psnr"].mean())
    assert abs(psnr["bf16"] - psnr["fp32"]) < 0.1, psnr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
@pytest.mark.parametrize("binarize", [False, True])
def test_a_cuda_epoch_never_waits_for_the_gpu_inside_its_loop(images, binarize):
    """The host waits as often for 2 steps as for 8: only before and after the loop."""
    from conftest import cuda_synchronisations

    cuda = torch.device("cuda")
    torch.manual_seed(0)
    model = ConvVAE(SMALL_CONFIG).to(cuda)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator(device=cuda).manual_seed(0)
    data = images.to(cuda)

    def epoch(steps: int):
        return lambda: train_epoch(model, optimizer, data, torch.arange(8 * steps), 8, 1.0, generator,
                                   binarize=binarize)

    epoch(2)()  # warm-up: cuDNN and the caching allocator settle
    assert cuda_synchronisations(epoch(2)) == cuda_synchronisations(epoch(8))


def test_the_kl_warmup_raises_the_kl_weight_linearly_over_its_share_of_the_steps():
    config = TrainConfig(epochs=2, beta=4.0, kl_warmup=0.5)  # 2 epochs of 4 steps: the weight reaches 4 at step 4
    assert config.kl_weights(4, 1) == [1.0, 2.0, 3.0, 4.0] and config.kl_weights(4, 2) == [4.0] * 4
    assert TrainConfig(epochs=2, beta=4.0).kl_weights(4, 1) is None  # no warm-up: beta itself at every step
    assert TrainConfig(epochs=1, beta=1.0, kl_warmup=0.01).kl_weights(3, 1) == [1.0, 1.0, 1.0]  # at least one step


def test_a_kl_warmup_changes_training_and_a_resumed_warmup_run_is_bit_identical(tmp_path):
    images = torch.rand(96, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    spec = ModelSpec("conv", 2, MNIST_SHAPE)
    plain = train_model(tmp_path / "plain", spec, TrainConfig(epochs=2, batch_size=16), images[:64], images[64:], CPU)
    warm = TrainConfig(epochs=2, batch_size=16, kl_warmup=0.5)
    straight = train_model(tmp_path / "warm", spec, warm, images[:64], images[64:], CPU)
    assert straight.history[0]["train_loss"] != plain.history[0]["train_loss"]

    class Killed(Exception):
        pass

    def kill_after_epoch_1(row, model):
        if row["epoch"] == 1:
            raise Killed  # as if killed right after epoch 1's checkpoint

    with pytest.raises(Killed):
        train_model(tmp_path / "resumed", spec, warm, images[:64], images[64:], CPU, on_epoch_end=kill_after_epoch_1)
    resumed = train_model(tmp_path / "resumed", spec, warm, images[:64], images[64:], CPU)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]
    assert state_dict_sha256(load_checkpoint(tmp_path / "resumed" / LAST_CHECKPOINT)["model_state"]) == \
        state_dict_sha256(load_checkpoint(tmp_path / "warm" / LAST_CHECKPOINT)["model_state"])
    # the warm-up's weights depend on the run's length: such a run is not continued to more epochs
    with pytest.raises(CheckpointError, match="the KL warm-up's weights depend on the run's length"):
        train_model(tmp_path / "resumed", spec, TrainConfig(epochs=3, batch_size=16, kl_warmup=0.5), images[:64],
                    images[64:], CPU)
