"""The embedded `local` model: no network, no key, runs on the CPU.

Zero-shot from the label descriptions (zero_shot.py) until a classifier has labelled examples,
then a model trained on them (trained.py). See the README's "The local model" section for the
measured accuracy and why MiniLM was chosen.
"""

import asyncio
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from backend.backends.base import (
    Backend,
    ClassifyRequest,
    ClassifyResult,
    LabelledText,
    LabelSpec,
    ModelInfo,
)
from backend.backends.local import multilabel
from backend.backends.local.embedder import EMBEDDER, TITLE_CHARS
from backend.backends.local.trained import TrainedModel, fit
from backend.backends.local.zero_shot import (
    catch_all_label,
    kind_texts,
    label_text,
    zero_shot_logits,
    zero_shot_probabilities,
)
from backend.config import Settings

log = logging.getLogger(__name__)

CACHE_SIZE = 64
LABEL_CACHE_SIZE = 4096

_label_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
_label_lock = threading.Lock()


def document_embedding(text: str) -> np.ndarray:
    """Embedding of the document's opening (its first 128 tokens), where its type shows.

    One short chunk keeps a warm classification well under 100 ms on one core; a second chunk
    or 256 tokens doubled the time without improving accuracy on docs-v1 (BENCHMARKS.md)."""
    return EMBEDDER.embed([text[:TITLE_CHARS]])[0]


def label_embeddings(labels: list[LabelSpec]) -> np.ndarray:
    """One vector per label: the normalized mean of the embeddings of "name: description" and of
    each kind the description enumerates (zero_shot.kind_texts), cached: a schema is embedded
    once, not per request."""
    groups = [[label_text(s)] + kind_texts(s) for s in labels]
    centroids = []
    for vectors in (_embedded(texts) for texts in groups):
        mean = vectors.mean(axis=0)
        centroids.append(mean / max(float(np.linalg.norm(mean)), 1e-9))
    return np.vstack(centroids)


def _embedded(texts: list[str]) -> np.ndarray:
    with _label_lock:
        missing = [t for t in dict.fromkeys(texts) if t not in _label_vectors]
    if missing:
        vectors = EMBEDDER.embed(missing)
        with _label_lock:
            _label_vectors.update(zip(missing, vectors, strict=True))
            while len(_label_vectors) > LABEL_CACHE_SIZE:
                _label_vectors.popitem(last=False)
    with _label_lock:
        for text in texts:
            _label_vectors.move_to_end(text)
        return np.vstack([_label_vectors[t] for t in texts])


def _code_digest() -> str:
    """Of the code a trained model depends on (its features include the zero-shot logits): a
    stored model is used only by the code that trained it."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


CODE_DIGEST = _code_digest()


def _key(labels: list[LabelSpec], examples: list[LabelledText]) -> str:
    digest = hashlib.sha256()
    for spec in labels:
        digest.update(f"{spec.label}\x00{spec.description}\x01".encode())
    for example in examples:
        digest.update(f"{example.label}\x00{example.text}\x01".encode())
    return digest.hexdigest()


def train(labels: list[LabelSpec], examples: list[LabelledText]) -> TrainedModel:
    """Fit on the examples (blocking; seconds for a hundred documents)."""
    names = [s.label for s in labels]
    usable = [e for e in examples if e.label in names]
    vectors = label_embeddings(labels)
    zero_shot = np.vstack(
        [zero_shot_logits(labels, e.text, document_embedding(e.text), vectors) for e in usable]
    )
    catch_all = catch_all_label(labels)
    return fit(
        names, [e.text for e in usable], [e.label for e in usable], zero_shot, catch_all=catch_all
    )


def estimate_accuracy(labels: list[LabelSpec], examples: list[LabelledText]) -> dict:
    """Cross-validated accuracy and calibration of a model trained on these examples, with the
    accuracy's 95% Wilson interval and `too_few_examples` when fewer than
    trained.MIN_EXAMPLES_FOR_ESTIMATE held-out predictions back it."""
    if len({e.label for e in examples}) < 2:
        return {
            "accuracy": None,
            "accuracy_interval": None,
            "too_few_examples": True,
            "ece": None,
            "n_examples": len(examples),
            "per_label": {},
        }
    return train(labels, examples).metrics


class LocalBackend(Backend):
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Trained models of saved classifier versions are stored beside the documents, so a
        # restart or another API process (sharing the storage) does not train them again.
        self.model_dir = settings.storage_dir / "models"
        self._models: OrderedDict[str, TrainedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._training: dict[str, threading.Lock] = {}

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name="local",
                backend=self.name,
                credits_per_page=self.settings.local_credits_per_page,
                # What its results say without examples; with examples of two or more labels
                # they say local_trained (the description says so).
                confidence_method="local_zero_shot",
                trainable=True,
                supports_multi_label=True,
                description=(
                    "Embedded model (MiniLM + lexical + genre cues): zero-shot from the label "
                    "descriptions (local_zero_shot), or trained on your examples "
                    "(local_trained). Ignores `instructions` (only "
                    "LLM models read them): put what matters in the label descriptions."
                ),
            )
        ]

    async def startup(self) -> None:
        # Load the ONNX model in the background so the first request does not pay for it.
        asyncio.get_running_loop().run_in_executor(None, EMBEDDER.embed, ["warm up"])

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        return await asyncio.to_thread(self._classify, request)

    def _trained(self, request: ClassifyRequest) -> TrainedModel:
        key = request.training_key or _key(request.labels, request.examples)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            training = self._training.setdefault(key, threading.Lock())
        # One training per key: the pages of a split arrive together and would each train.
        with training:
            with self._lock:
                model = self._models.get(key)
            if model is None:
                model = self._load_or_train(request)
                with self._lock:
                    self._models[key] = model
                    while len(self._models) > CACHE_SIZE:
                        self._models.popitem(last=False)
        with self._lock:
            self._training.pop(key, None)
        return model

    def _load_or_train(self, request: ClassifyRequest) -> TrainedModel:
        """A saved classifier version's stored model, else one trained now (and stored, when
        the request names its version)."""
        key = request.training_key
        model = self._load(key) if key else None
        if model is None:
            model = train(request.labels, request.examples)
            if key:
                self._store(key, model)
        return model

    def _path(self, training_key: str) -> Path:
        name = hashlib.sha256(f"{CODE_DIGEST}:{training_key}".encode()).hexdigest()
        return self.model_dir / f"{name}.pkl"

    def _load(self, training_key: str) -> TrainedModel | None:
        path = self._path(training_key)
        try:
            return TrainedModel.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except Exception as error:  # unreadable (truncated, other library versions): retrain
            log.warning("Stored model %s unusable (%s); training again", path.name, error)
            return None

    def _store(self, training_key: str, model: TrainedModel) -> None:
        path = self._path(training_key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            partial.write_bytes(model.dumps())
            partial.replace(path)  # atomic: a reader sees the whole model or none
        except OSError as error:  # a full or read-only disk costs a retrain later, nothing more
            log.warning("Could not store trained model %s: %s", path.name, error)

    def _classify(self, request: ClassifyRequest) -> ClassifyResult:
        taught = {e.label for e in request.examples} & {s.label for s in request.labels}
        if request.multi_label:  # its own path: the document read part by part (multilabel.py)
            trained = self._trained(request) if len(taught) >= 2 else None
            return multilabel.classify(request, label_embeddings(request.labels), trained)
        text = "\n\n".join(request.pages)
        embedding = document_embedding(text)
        vectors = label_embeddings(request.labels)
        if len(taught) < 2:
            zero = zero_shot_probabilities(request.labels, text, embedding, vectors)
            return ClassifyResult(scores=zero, confidence_method="local_zero_shot")
        model = self._trained(request)
        zero_shot = zero_shot_logits(request.labels, text, embedding, vectors)
        probabilities = model.predict_proba([text], zero_shot[None, :])[0]
        return ClassifyResult(
            scores={
                spec.label: float(p) for spec, p in zip(request.labels, probabilities, strict=True)
            },
            confidence_method="local_trained",
            details={"cv_accuracy": model.metrics.get("accuracy")},
        )
