"""Environment defaults that keep DocSift off the network.

Imported first by every entry point: `import litellm` fetches a price list and tiktoken downloads
its encodings unless these are set, and the service must start with no network at all.
"""

import os
from importlib.util import find_spec
from pathlib import Path


def apply_offline_defaults() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        spec = find_spec("litellm")
        if spec and spec.origin:
            tokenizers = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
            if tokenizers.is_dir():
                os.environ["TIKTOKEN_CACHE_DIR"] = str(tokenizers)


apply_offline_defaults()
