from __future__ import annotations

import pytest

from agglo.config import RunConfig, load_config
from agglo.errors import AggloInputError


def test_defaults_without_file():
    cfg = load_config(None)
    assert cfg.panel is None and cfg.section("index") == {}


def test_toml_paths_resolved_relative_to_file(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "agglo.toml"
    p.write_text('[inputs]\npanel = "panel.csv"\nyears = [2010, 2020]\n[index]\nddof = 1\n')
    cfg = load_config(p)
    assert cfg.panel == tmp_path / "sub" / "panel.csv"
    assert cfg.years == [2010, 2020]
    assert cfg.section("index") == {"ddof": 1}
    assert cfg.to_dict()["panel"].endswith("panel.csv")


def test_unknown_keys_suggest_names(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text('[inputs]\npannel = "x.csv"\n[indx]\n')
    with pytest.raises(AggloInputError, match=r"(?s)did you mean 'panel'\?.*did you mean 'index'"):
        load_config(p)


def test_bad_toml_and_missing_file(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text("[inputs\n")
    with pytest.raises(AggloInputError, match="not valid TOML"):
        load_config(p)
    with pytest.raises(AggloInputError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    assert isinstance(RunConfig(), RunConfig)
