"""Discovers backends through the `docsift.backends` entry-point group and routes model names."""

import logging
from importlib.metadata import entry_points

from backend.backends.base import Backend, ModelInfo
from backend.config import Settings
from backend.errors import InvalidRequest

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "docsift.backends"


class BackendRegistry:
    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends
        self._by_model: dict[str, tuple[Backend, ModelInfo]] = {}
        for backend in backends:
            for info in backend.models():
                # First registration wins, so a plugin cannot silently shadow a built-in model.
                self._by_model.setdefault(info.name, (backend, info))

    @classmethod
    def from_entry_points(cls, settings: Settings) -> "BackendRegistry":
        backends: list[Backend] = []
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                factory = ep.load()
                backends.append(factory(settings))
            except Exception:  # a broken plugin must not take the server down
                log.exception("backend plugin %s failed to load", ep.name)
        return cls(backends)

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
