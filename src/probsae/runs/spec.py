"""The full description of one training run, stored as ``run.json`` in its directory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.prepare import DataSpec
from ..errors import ConfigError, ProbSAEError, SAEFileError
from ..training.config import TrainConfig

if TYPE_CHECKING:
    from ..saes.config import SAEConfig

RUN_FILE = "run.json"
PLOT_FILE = "training.png"


@dataclass
class RunSpec:
    """One SAE trained on one activation source."""

    architecture: str = "prob_topk"
    """Registered architecture name (probsae.ARCHITECTURES)."""
    hparams: SAEConfig | Mapping[str, Any] | None = None
    """The architecture's hyperparameters (k, lambda_mag, l1_coeff, …): an instance of its config
    class (``get_class(architecture).config_class``), validated when parsed. A mapping (the CLI's,
    a preset's, run.json's ``hparams``) is parsed into one; its ``seed`` (run.json written before
    the run had one seed) is the run's seed, ``train.seed``."""
    expansion: int = 16
    """d_sae = expansion × d_in unless d_sae is given (the paper: 16)."""
    d_sae: int | None = None
    """Number of latents (overrides expansion)."""
    epochs: float = 1.0
    """Passes over the cached training tokens when train.steps is not set."""
    stream: bool = False
    """Train straight from the model without a cache (steps from max_tokens); the GPU path."""
    stream_buffer: int = 16
    """Streaming: size of the on-device shuffle buffer, in training batches (mixes the tokens of
    that many batches' worth of windows, so an SAE never sees a document in order)."""
    cache_dir: str = "cache"
    """Root folder of activation caches (shared by runs with the same data spec)."""
    downstream_tokens: int | None = None
    """Causal LMs: held-out next-token positions on which CE/KL with the SAE spliced in are measured
    at the end of training, with the model already loaded (None: the default of ``probsae eval``,
    32,768; 0: skip). Encoders have no next-token CE and skip it."""
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        from ..saes.config import SAEConfig
        from ..saes.registry import build_config, get_class

        if self.hparams is None or isinstance(self.hparams, Mapping):
            hp = dict(self.hparams or {})
            if "seed" in hp:  # the SAE's seed before it was the run's one seed (TrainConfig.seed)
                self.train = replace(self.train, seed=hp.pop("seed"))
            self.hparams = build_config(self.architecture, **hp)
        elif not isinstance(self.hparams, get_class(self.architecture).config_class):
            got = type(self.hparams).__name__ if isinstance(self.hparams, SAEConfig) else repr(self.hparams)
            raise ConfigError(f"hparams must be a mapping or a {get_class(self.architecture).config_class.__name__} "
                              f"(architecture {self.architecture!r}), got {got}")

    def hparams_dict(self) -> dict[str, Any]:
        """The hyperparameters as run.json, metrics.json and the run's header line show them: those
        given, and the run's seed (``train.seed``) unless it is the default."""
        from ..saes.config import SEED, SAEConfig

        given = self.hparams.given() if isinstance(self.hparams, SAEConfig) else dict(self.hparams)
        return given if self.train.seed == SEED or "seed" in given else {**given, "seed": self.train.seed}

    def sae_config(self) -> SAEConfig:
        """The SAE's hyperparameters: the typed, validated config ``build_sae`` builds the SAE from."""
        return self.hparams

    def d_sae_for(self, d_in: int) -> int:
        """The number of latents for activations of width ``d_in``: d_sae, else expansion × d_in."""
        return int(self.d_sae or self.expansion * d_in)

    def build_sae(self, width: int):
        """The untrained SAE of this run for data rows of ``width``: the activation width, or for a
        transcoder (``data.target_hook``) the width of its [input | target] pairs, twice d_in."""
        from ..saes import get_class

        d_in = width // 2 if self.data.target_hook else width
        return get_class(self.architecture)(self.sae_config(), d_in, self.d_sae_for(d_in), self.train.seed)

    def to_dict(self) -> dict[str, Any]:
        """As JSON has it (tuples such as adam_betas or prefix_fractions become lists), so a spec
        compares equal to itself read back from run.json."""
        from ..io import strict_json

        return strict_json({**asdict(self), "hparams": self.hparams_dict()})

    def validate(self) -> None:
        """Check every option before any data is extracted (``ConfigError``/``DataError``)."""
        from ..validators import number, whole

        whole("expansion", self.expansion, 1)
        if self.d_sae is not None:
            whole("d_sae", self.d_sae, 1, "a positive integer or None")
        number("epochs", self.epochs, positive=True)
        whole("stream_buffer", self.stream_buffer, 1)
        if self.downstream_tokens is not None:
            whole("downstream_tokens", self.downstream_tokens, 0, "a non-negative integer (0: skip) or None")
        # hparams were validated when parsed; a given d_sae is checked against them now (k ≤ d_sae),
        # before any extraction; the checks that need d_in wait for the SAE's constructor
        if self.d_sae is not None:
            self.sae_config().check_sizes(None, self.d_sae)
        self._check_target()
        self.data.validate()
        self.train.validate()
        limit = self.data.max_tokens
        if self.stream and self.train.steps is None and limit is None:
            raise ConfigError("streaming without a cache needs --steps or --max-tokens (a model stream has no end "
                              "to count epochs from)")
        if not self.stream and limit is not None and limit < self.train.batch_size:
            raise ConfigError(f"max_tokens={limit} is fewer than batch_size={self.train.batch_size}: "
                              "not one batch could be trained")

    def _check_target(self) -> None:
        """A target hook point and an architecture that predicts a target come together."""
        from ..saes import architectures, get_class

        if bool(self.data.target_hook) == get_class(self.architecture).predicts_target:
            return
        predictors = [a for a in architectures() if get_class(a).predicts_target]
        if self.data.target_hook:
            raise ConfigError(f"target_hook={self.data.target_hook!r} needs an architecture that predicts another "
                              f"activation ({', '.join(predictors)}); {self.architecture!r} reconstructs its input")
        raise ConfigError(f"architecture {self.architecture!r} predicts another activation from hook {self.data.hook!r}: "
                          "set target_hook (--target-hook), e.g. the MLP's output for its input")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        d = dict(d)
        if not isinstance(d.get("data", {}), dict) or not isinstance(d.get("train", {}), dict):
            raise ConfigError("invalid run spec: 'data' and 'train' must be objects")
        data = DataSpec.from_dict(d.pop("data", {}))
        tr = dict(d.pop("train", {}))
        if "adam_betas" in tr:
            tr["adam_betas"] = tuple(tr["adam_betas"])
        try:
            return cls(data=data, train=TrainConfig(**tr), **d)
        except TypeError as e:
            raise ConfigError(f"invalid run spec: {e}") from None

    def comparable(self) -> dict[str, Any]:
        """The fields that define the result (not logging/progress/device)."""
        d = self.to_dict()
        for k in ("progress", "log_every", "log_path", "device", "checkpoint_every", "extra", "alive_log_window"):
            d["train"].pop(k, None)
        d["data"].pop("device", None)
        d.pop("cache_dir", None)
        d.pop("downstream_tokens", None)
        return d


def data_metadata(data: DataSpec, **extra: Any):
    """The :class:`~probsae.saes.SAEMetadata` of an SAE trained on ``data`` (saved in its config.json)."""
    from ..saes.metadata import SAEMetadata

    return SAEMetadata(model_name=data.model, hook_name=data.hook, target_hook_name=data.target_hook,
                       context_length=data.context_length,
                       exclude_special=data.exclude_special, corpus=data.corpus, text_field=data.text_field,
                       holdout_every=data.holdout_every, activation_dtype=data.dtype, extra=dict(extra))


def data_sources(data: DataSpec) -> dict[str, Any]:
    """Fingerprints of what the activations are computed from: the corpus (a local file's size and
    content hash, or size and mtime above 64 MiB) and the model (a local directory's files, else
    its name). ``run.json`` records them at training; ``probsae eval`` warns when they changed."""
    from ..data.cache import model_source
    from ..data.corpus import load_corpus

    return {"corpus": load_corpus(data.corpus, text_field=data.text_field).fingerprint(),
            "model": model_source(data.model)}


def changed_sources(recorded: dict[str, Any] | None, data: DataSpec) -> list[str]:
    """Warnings, one per source (corpus, model) whose fingerprint differs from ``recorded`` (the
    ``sources`` of a run.json; None, as in runs written before it was recorded: no warnings)."""
    if not isinstance(recorded, dict):
        return []
    now = data_sources(data)
    out = []
    for what, name in (("corpus", data.corpus), ("model", data.model)):
        before, after = recorded.get(what), now[what]
        if before is None or before == after:
            continue
        files_before = before.get("files") if isinstance(before, dict) else None
        if isinstance(files_before, dict) and isinstance(after.get("files"), dict):
            changed = sorted(f for f in set(files_before) | set(after["files"])
                             if files_before.get(f) != after["files"].get(f))
            detail = f"{', '.join(changed[:3])}{', …' if len(changed) > 3 else ''} changed (size/content)"
        else:
            detail = f"it was {before!r:.120}, now {after!r:.120}"
        out.append(f"the {what} {name!r} is not the one this run was trained on ({detail})")
    return out


def write_spec(run_dir: Path, spec: RunSpec, command: str | None, sources: dict[str, Any] | None = None) -> None:
    """Write ``run.json``: the spec, the command line and ``sources`` (``data_sources`` at training)."""
    from ..io import atomic_write_json

    payload = {"format": "probsae-run", "spec": spec.to_dict(), "command": command}
    if sources is not None:
        payload["sources"] = sources
    atomic_write_json(run_dir / RUN_FILE, payload)


def read_sources(run_dir: Path) -> dict[str, Any] | None:
    """The ``sources`` recorded in ``run_dir/run.json`` (None when it records none)."""
    from ..io import read_json

    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    sources = read_json(path, dict, SAEFileError).get("sources")
    return sources if isinstance(sources, dict) else None


def read_spec(run_dir: Path) -> RunSpec:
    from ..io import json_field, read_json

    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise SAEFileError(f"{run_dir} is not a probsae run directory (no {RUN_FILE})")
    obj = read_json(path, dict, SAEFileError)
    try:
        return RunSpec.from_dict(json_field(obj, "spec", dict, path, SAEFileError))
    except ProbSAEError as e:
        raise SAEFileError(f"{path}: {e}") from None


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries where two nested dicts differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k} ({va!r} → {vb!r})")
    return out
