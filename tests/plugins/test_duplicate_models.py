"""A plugin cannot take a model name: an installed backend that also declares `gpt-4o` stops the
server from starting, with a log line naming both backends, unless DOCSIFT_MODEL_BACKENDS says
which one serves it.

The plugin (tests/plugins/docsift-shadow-backend) is installed the way pip lays a package out, a
module beside its `.dist-info` with `entry_points.txt`, into a temporary folder put on sys.path
for the test only, so no other test (nor any other process) ever sees it.
"""

import importlib
import logging
import shutil
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.backends.registry import BackendRegistry, DuplicateModelError
from backend.main import create_app
from tests.conftest import make_settings

PLUGIN = Path(__file__).parent / "docsift-shadow-backend"


def install(site: Path) -> None:
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    shutil.copytree(PLUGIN / "docsift_shadow_backend", site / "docsift_shadow_backend")
    info = site / f"docsift_shadow_backend-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    points = project["entry-points"]["docsift.backends"]
    (info / "entry_points.txt").write_text(
        "[docsift.backends]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
    )


@pytest.fixture
def shadow_installed(tmp_path: Path) -> Iterator[None]:
    site = tmp_path / "site"
    site.mkdir()
    install(site)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("docsift_shadow_backend", None)
        importlib.invalidate_caches()


def test_a_name_served_twice_is_refused_naming_both_backends(
    shadow_installed, database_url, tmp_path, caplog
):
    settings = make_settings(database_url, tmp_path)
    with caplog.at_level(logging.ERROR), pytest.raises(DuplicateModelError):
        BackendRegistry.from_entry_points(settings)
    (line,) = [r.getMessage() for r in caplog.records if "gpt-4o" in r.getMessage()]
    assert "'litellm' (backend.backends.llm" in line
    assert "'shadow' (docsift_shadow_backend.ShadowBackend)" in line
    assert "DOCSIFT_MODEL_BACKENDS" in line


async def test_the_server_does_not_start(shadow_installed, database_url, tmp_path):
    app = create_app(make_settings(database_url, tmp_path))
    with pytest.raises(DuplicateModelError):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.parametrize("owner", ["litellm", "shadow"])
def test_the_setting_chooses_who_serves_it(shadow_installed, database_url, tmp_path, owner):
    settings = make_settings(database_url, tmp_path, model_backends={"gpt-4o": owner})
    registry = BackendRegistry.from_entry_points(settings)
    _, info = registry.resolve("gpt-4o")
    assert info.backend == owner
    assert registry.resolve("gpt-4o-mini")[1].backend == "litellm"


def test_without_the_plugin_the_built_in_serves_it(database_url, tmp_path):
    registry = BackendRegistry.from_entry_points(make_settings(database_url, tmp_path))
    assert registry.resolve("gpt-4o")[1].backend == "litellm"
