"""Discovers backends through the `docsift.backends` entry-point group and routes model names.

A model name is served by one backend. When two installed backends declare the same name (a
plugin that also serves `gpt-4o`), the server refuses to start with a log line naming both,
unless `DOCSIFT_MODEL_BACKENDS` (e.g. `{"gpt-4o": "litellm"}`) says which one serves it.
"""

import logging
from importlib.metadata import entry_points

from backend.backends.base import Backend, ModelInfo
from backend.config import Settings
from backend.errors import InvalidRequest

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "docsift.backends"


class DuplicateModelError(RuntimeError):
    """Two backends declare one model name and no setting says which serves it."""


def _describe(backend: Backend, info: ModelInfo) -> str:
    return f"'{info.backend}' ({type(backend).__module__}.{type(backend).__qualname__})"


class BackendRegistry:
    def __init__(
        self,
        backends: list[Backend],
        *,
        choices: dict[str, str] | None = None,
        strict: bool = False,
    ) -> None:
        """`choices` maps a model name to the backend that serves it when several declare it.
        With `strict` (how the server builds it), a name declared twice without a choice is
        refused; otherwise (tests composing backends by hand) the first one is kept."""
        self.backends = backends
        self._by_model: dict[str, tuple[Backend, ModelInfo]] = {}
        claims: dict[str, list[tuple[Backend, ModelInfo]]] = {}
        for backend in backends:
            for info in backend.models():
                claims.setdefault(info.name, []).append((backend, info))
        choices = choices or {}
        for name, served in claims.items():
            chosen = [c for c in served if c[1].backend == choices.get(name)]
            if len(served) > 1 and not chosen:
                described = " and ".join(_describe(b, i) for b, i in served)
                message = (
                    f"Model '{name}' is served by {len(served)} backends: {described}. "
                    f'Uninstall one, or choose with DOCSIFT_MODEL_BACKENDS=\'{{"{name}": '
                    f'"{served[0][1].backend}"}}\'.'
                )
                if strict:
                    log.error(message)
                    raise DuplicateModelError(message)
                log.warning(message)
            elif len(served) > 1:
                log.warning(
                    "Model '%s' is served by %s as DOCSIFT_MODEL_BACKENDS chooses; also declared "
                    "by %s",
                    name,
                    _describe(*chosen[0]),
                    ", ".join(_describe(b, i) for b, i in served if (b, i) != chosen[0]),
                )
            self._by_model[name] = chosen[0] if chosen else served[0]

    @classmethod
    def from_entry_points(cls, settings: Settings) -> "BackendRegistry":
        backends: list[Backend] = []
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                factory = ep.load()
                backends.append(factory(settings))
            except Exception:  # a broken plugin must not take the server down
                log.exception("backend plugin %s failed to load", ep.name)
        return cls(backends, choices=settings.model_backends, strict=True)

    def models(self) -> list[ModelInfo]:
        return [info for _, info in self._by_model.values()]

    def resolve(self, model: str) -> tuple[Backend, ModelInfo]:
        try:
            return self._by_model[model]
        except KeyError:
            known = ", ".join(sorted(self._by_model))
            raise InvalidRequest(f"Unknown query_model '{model}'. Available: {known}") from None

    async def startup(self) -> None:
        for backend in self.backends:
            await backend.startup()

    async def shutdown(self) -> None:
        for backend in self.backends:
            await backend.shutdown()
