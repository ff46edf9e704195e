"""Where a transformers model's files come from: a local folder or the model hub's cache, named and identified
without loading weights, and one error line (at once) when they cannot be had offline. Split from
:mod:`.transformers_encoder`, which encodes with them; the sentence-transformers plugin and training use them too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from ..errors import XlirError
from ..suites.download import reachable


def weights_digest(folder: Path) -> str:
    """sha256 over the weight files of a local model folder: its revision when there is no commit hash.

    Remembered in ``.xlir-bench-digest.json`` beside the weights (keyed by file sizes and mtimes) when the folder
    is writable, so large models are hashed once.
    """
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file())
    stamp = [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    memo = folder / ".xlir-bench-digest.json"
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(memo.read_text())
        if saved["files"] == stamp:
            return saved["digest"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                digest.update(chunk)
    value = "sha256:" + digest.hexdigest()[:16]
    with contextlib.suppress(OSError):
        memo.write_text(json.dumps({"files": stamp, "digest": value}))
    return value


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars while loading (the harness shows its own)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def resolve_source(name_or_path: str) -> tuple[str, Path | None]:
    """(what to hand to from_pretrained, the local folder if it is one)."""
    local = Path(name_or_path).expanduser()
    return (str(local), local) if local.is_dir() else (name_or_path, None)


def missing_folder(name_or_path: str, hint: str) -> XlirError | None:
    """The error for a model named by a path that is not a folder (``hf:/models/e5``, ``hf:./e5``, ``hf:~/e5``):
    a hub id never starts so, and asking the hub about it would only say "not in the cache" about a typo."""
    if not str(name_or_path).startswith(("/", "./", "../", "~", ".\\", "..\\")):
        return None
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return None
    what = "is a file, not a folder" if local.exists() else "does not exist"
    return XlirError(f"no model folder {name_or_path}: it {what}; pass a folder holding the model's config.json "
                     f"and weights ({hint}) or a model hub id")  # fmt: skip


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) accepts a TCP connection (asked once per process, with a short
    timeout: without it, an offline machine spends ~30 s in the hub client's retries before failing)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    return reachable(os.environ.get("HF_ENDPOINT") or "https://huggingface.co", timeout)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an odd id or an old huggingface_hub: let transformers decide
        return True


def not_available(name_or_path: str, hint: str = "hf:/path/to/model") -> XlirError:
    return XlirError(
        f"model {name_or_path!r} is not in the local Hugging Face cache and the hub is unreachable (offline?); "
        f"pass a local folder ({hint}) or download it once online (HF_HOME sets the cache)"
    )


def read_config(name_or_path: str, *, trust_remote_code: bool = False, hint: str = "hf:/path/to/model"):
    """(config, revision) without loading weights: enough to identify the model, e.g. for the embedding cache.

    A hub id is looked up in the local cache first; only when it is not there is the hub asked, and an unreachable
    hub is one error line at once instead of retries."""
    source, local = resolve_source(name_or_path)
    problem = missing_folder(name_or_path, hint)
    if problem is not None:
        raise problem
    if local is None and not _in_hub_cache(source) and not hub_reachable():
        raise not_available(name_or_path, hint)  # before importing transformers and torch (seconds)
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            if local is not None:
                config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
            else:
                try:
                    config = AutoConfig.from_pretrained(
                        source, trust_remote_code=trust_remote_code, local_files_only=True
                    )
                except (OSError, ValueError):
                    if not hub_reachable():
                        raise not_available(name_or_path, hint) from None
                    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if local is not None:
            raise XlirError(f"cannot load a transformers model from {local}: {str(exc).splitlines()[0]}") from None
        raise XlirError(
            f"model {name_or_path!r} is not in the local Hugging Face cache and could not be downloaded "
            f"({str(exc).splitlines()[0][:120]}); pass a local folder ({hint}) or download it once online"
        ) from None
    revision = getattr(config, "_commit_hash", None) or (weights_digest(local) if local is not None else "unknown")
    return config, revision


def load_pretrained(name_or_path: str, *, trust_remote_code: bool = False):
    """(tokenizer, model) from a local folder or the hub cache."""
    from transformers import AutoTokenizer

    source, _ = resolve_source(name_or_path)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = load_encoder_weights(source, trust_remote_code=trust_remote_code)
    return tokenizer, model


def load_encoder_weights(source, **kwargs):
    """AutoModel without the pooler head where the architecture has one: sentence embeddings never use it, and
    an unused head would leave DistributedDataParallel with parameters that get no gradient."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(source, add_pooling_layer=False, **kwargs)
    except TypeError:
        return AutoModel.from_pretrained(source, **kwargs)


def hub_status(factory) -> str | None:
    """For a plugin whose weights come from the model hub (a factory with ``hub_id``): whether they are in the
    local cache, so that ``xlir-bench models`` does not call a model "ok" that an offline run cannot load. None for
    any other plugin."""
    model_id = getattr(factory, "hub_id", None)
    if model_id is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with transformers
        return None
    cached = try_to_load_from_cache(model_id, "config.json")
    if isinstance(cached, str):
        return "ok (weights cached)"
    return f"needs the model hub once: {model_id} is not in the local cache"
