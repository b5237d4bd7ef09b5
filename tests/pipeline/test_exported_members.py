import subprocess
import sys

import pytest

import pipeline


def test_all_is_sorted():
    names = pipeline.__all__
    assert names == sorted(names, key=lambda n: (n[0].islower(), n))


def test_every_exported_member_is_reachable_and_ours():
    for name in pipeline.__all__:
        member = getattr(pipeline, name)
        assert member.__module__.startswith("pipeline."), name


def test_every_public_name_is_exported():
    public = {name for name, value in vars(pipeline).items() if not name.startswith("_")}
    modules = {name for name, value in vars(pipeline).items() if type(value).__name__ == "module"}
    assert public - modules - {"annotations", "importlib", "TYPE_CHECKING", "Any"} <= set(pipeline.__all__)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = pipeline.no_such_thing


@pytest.mark.parametrize(
    "first", ["stages.fetch", "stages.remux", "pipeline.cli", "pipeline", "pipeline.run"]
)
def test_packages_import_in_any_order(first):
    """No import cycle: the layers import only downwards, so any can be imported first (the library's
    entry points are in ``pipeline.run``; the top-level package holds the model's names only)."""
    code = f"import {first}; import pipeline; import pipeline.run; pipeline.run.run; import stages.publish"
    subprocess.run([sys.executable, "-c", code], check=True)
