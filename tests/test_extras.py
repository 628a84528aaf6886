"""Optional parts of agglo name the extra to install when their package is missing."""

from __future__ import annotations

import sys

import pytest

from agglo.errors import AggloInputError, MissingDependencyError, require


@pytest.mark.parametrize(
    ("module", "extra"), [("giddy.markov", "markov"), ("distributed", "dask"), ("osmium", "osm")]
)
def test_missing_optional_package_names_its_extra(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import of it now raises ImportError
    with pytest.raises(MissingDependencyError, match=rf"pip install 'agglo\[{extra}\]'") as e:
        require(module, extra, "this step")
    # one exception family: the CLI turns it into exit code 2 with the message
    assert isinstance(e.value, AggloInputError) and isinstance(e.value, ImportError)


def test_lisa_transitions_without_giddy(monkeypatch):
    import pandas as pd

    from agglo.analysis.autocorr import lisa_transitions

    monkeypatch.setitem(sys.modules, "giddy.markov", None)
    with pytest.raises(MissingDependencyError, match=r"agglo\[markov\]"):
        lisa_transitions(pd.DataFrame(), None)


def test_zonal_pm25_default_scheduler_without_dask(monkeypatch):
    import importlib.util

    from agglo.measures import pm25

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "dask" else real(name, *a)
    )
    assert pm25._check_scheduler(None) == "synchronous"
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(MissingDependencyError, match=r"agglo\[dask\]"):
        pm25._run([1, 2], None, {}, "threads", 1)
