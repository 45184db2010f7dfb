"""Which network a trial trains: the built-in architectures by name, or a user's own builder.

An architecture is named by `--architecture`: `conv` (model.ConvVAE, the default), `mlp`
(model.MlpVAE), or `package.module:function`, a user's builder

    def build(latent_dim: int, image_shape: tuple[int, int, int]) -> torch.nn.Module

whose module has `encode(images) -> (mean, log_var)`, each (N, latent_dim), and
`decode(latents) -> logits` shaped (N, *image_shape) (examples/my_vae.py is a complete one).
`check_protocol` tries both on a small batch and names what is wrong.

A checkpoint records the architecture by name (`ModelSpec.checkpoint_fields`). Rebuilding a
user's model from one imports the module named in the file only when the caller passes that same
name as `trusted` (the user's own `--architecture`): importing runs code, and a study folder or a
checkpoint may come from someone else (RELIABILITY.md).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from latentsweep.config import BUILTIN_ARCHITECTURES, LEGACY_AXIS_VALUES
from latentsweep.errors import CheckpointError, ConfigError
from latentsweep.model import ConvVAE, MlpConfig, MlpVAE, VAEConfig


Builder = Callable[[int, tuple[int, int, int]], nn.Module]

# Builders handed over as Python callables (study.run_study), by the name they are recorded under.
_REGISTERED: dict[str, Builder] = {}


def register_builder(function: Builder) -> str:
    """Make a callable usable as an architecture in this process; returns its name, module:function."""
    name = f"{function.__module__}:{function.__name__}"
    if name.partition(":")[0] in ("", None) or not function.__name__.isidentifier():
        raise ConfigError(f"architecture {function!r}: give a named function, not a lambda")
    _REGISTERED[name] = function
    return name


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a trial's untrained network."""

    architecture: str
    latent_dim: int
    image_shape: tuple[int, int, int]  # (channels, height, width) of the images it is built for

    def model_config(self) -> dict[str, Any]:
        """What a checkpoint stores as "model_config": the built-in model's config dataclass as a dict,
        or for a user's builder its two arguments."""
        if self.architecture in BUILTIN_NETWORKS:
            return dataclasses.asdict(builtin_config(self.architecture, self.latent_dim, self.image_shape))
        return {"latent_dim": self.latent_dim, "image_shape": list(self.image_shape)}

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "model_config": self.model_config()}

    def build(self, seed: int) -> nn.Module:
        """The network with its weights initialised from `seed`, without touching the global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(self.architecture)(self.latent_dim, self.image_shape)
            check_protocol(model, self)
        return model


BUILTIN_NETWORKS = {"conv": (VAEConfig, ConvVAE), "mlp": (MlpConfig, MlpVAE)}


def builtin_config(name: str, latent_dim: int, shape: tuple[int, int, int]) -> VAEConfig | MlpConfig:
    """A built-in architecture's config for images of `shape` (channels, height, width)."""
    config_class, _ = BUILTIN_NETWORKS[name]
    channels, height, width = shape
    return config_class(latent_dim=latent_dim, image_size=height, image_channels=channels, image_width=width)


def describe(name: str, latent_dim: int, shape: tuple[int, int, int]) -> str:
    """Architecture `name` for images of `shape` at `latent_dim`, in words: a built-in network describes its own
    layers (model.VAE.describe); a user's builder is named, never imported for this."""
    if name in BUILTIN_NETWORKS:
        network = BUILTIN_NETWORKS[name][1](builtin_config(name, latent_dim, shape))
        return f"{network.title} ({name}); {network.describe()}"
    return f"the user's architecture {name} (its builder's module, imported by name)"


def stored_model_config(name: str, saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's model_config with the fields added since it was written at their defaults (a built-in
    config written before image_width existed is square), as ModelSpec.model_config would write it now."""
    if name not in BUILTIN_NETWORKS or not isinstance(saved, dict):
        return saved
    try:
        return dataclasses.asdict(BUILTIN_NETWORKS[name][0](**saved))
    except (TypeError, ValueError):
        return saved  # not a config this version can read: the comparison fails and names it


def builder(name: str) -> Builder:
    """The function that builds architecture `name`; a user's module is imported here."""
    if name in BUILTIN_NETWORKS:
        network = BUILTIN_NETWORKS[name][1]
        return lambda latent_dim, shape: network(builtin_config(name, latent_dim, shape))
    if name in _REGISTERED:
        return _REGISTERED[name]
    module_name, _, function_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--architecture {name}: cannot import module {module_name!r} ({exc}); "
                          "is its folder on PYTHONPATH?") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"--architecture {name}: module {module_name} has no function {function_name!r}")
    return function


def check_protocol(model: Any, spec: ModelSpec) -> None:
    """Raise a one-line ConfigError naming what `model` gets wrong about the protocol, on a batch of 2."""
    where = f"--architecture {spec.architecture}"
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where}: the builder returned {type(model).__name__}, not a torch.nn.Module")
    for method in ("encode", "decode"):
        if not callable(getattr(model, method, None)):
            raise ConfigError(f"{where}: the model has no {method}() method (it needs encode(images) -> (mean, log_var) "
                              "and decode(latents) -> logits)")
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ConfigError(f"{where}: the model has no trainable parameters")
    was_training = model.training
    model.eval()  # no batch-norm statistics or other state may change from this check
    try:
        with torch.no_grad():
            encoded = _call(model.encode, torch.zeros(2, *spec.image_shape), f"{where}: encode")
            if not (isinstance(encoded, (tuple, list)) and len(encoded) == 2 and all(isinstance(t, torch.Tensor) for t in encoded)):
                raise ConfigError(f"{where}: encode() must return a pair (mean, log_var) of tensors, "
                                  f"got {type(encoded).__name__}")
            for part, tensor in zip(("mean", "log_var"), encoded):
                if tuple(tensor.shape) != (2, spec.latent_dim):
                    raise ConfigError(f"{where}: encode() returned {part} of shape {tuple(tensor.shape)} for 2 images; "
                                      f"expected (2, {spec.latent_dim})")
            logits = _call(model.decode, torch.zeros(2, spec.latent_dim), f"{where}: decode")
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, *spec.image_shape):
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ConfigError(f"{where}: decode() returned {shape} for 2 latent codes; expected logits of shape "
                                  f"{(2, *spec.image_shape)}")
    finally:
        model.train(was_training)


def _call(method: Callable, argument: torch.Tensor, what: str) -> Any:
    try:
        return method(argument)
    except Exception as exc:  # noqa: BLE001 - any error in the user's code is the protocol's failure
        raise ConfigError(f"{what}() failed on a batch of shape {tuple(argument.shape)}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]) from None


def spec_from_checkpoint(checkpoint: dict[str, Any], source: Any, trusted: Iterable[str] = ()) -> ModelSpec:
    """The ModelSpec a checkpoint was made with; checkpoints from before architectures are conv."""
    name = checkpoint.get("architecture", LEGACY_AXIS_VALUES["architecture"])
    config = checkpoint["model_config"]
    if name not in BUILTIN_ARCHITECTURES and name not in set(trusted):
        raise CheckpointError(f"{source}: made with the user architecture {name}; pass --architecture {name} "
                              "to import that module and rebuild it (latentsweep never imports a module named in a file "
                              "by itself)")
    try:
        shape = (tuple(config["image_shape"]) if "image_shape" in config
                 else (config["image_channels"], config["image_size"], config.get("image_width") or config["image_size"]))
        return ModelSpec(name, int(config["latent_dim"]), tuple(int(s) for s in shape))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: model_config lacks what the {name} architecture needs ({exc})") from None


def model_from_checkpoint(checkpoint: dict[str, Any], source: Any, trusted: Iterable[str] = ()) -> tuple[nn.Module, ModelSpec]:
    """The checkpoint's network with its weights, and its spec; damage is a one-line CheckpointError."""
    spec = spec_from_checkpoint(checkpoint, source, trusted)
    try:
        if spec.architecture in BUILTIN_ARCHITECTURES:
            config_class, network = BUILTIN_NETWORKS[spec.architecture]
            model = network(config_class(**checkpoint["model_config"]))
        else:
            model = spec.build(seed=0)
        model.load_state_dict(checkpoint["model_state"])
    except (TypeError, ValueError, RuntimeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source}: weights do not fit the model config ({first_line[:200]})") from None
    return model, spec
