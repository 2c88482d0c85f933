"""Query-time selection options never refit; fit-time ones do; bad values are refused (issue 11 item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from vlmhub.errors import ConfigError, SelectionError
from vlmhub.selection.mll import MLLConfig, MLLSelector
from vlmhub.tasks import Task

TASK = Task("colours", ("red", "green", "blue"), domain="colour swatches")


def test_query_time_overrides_share_the_fitted_index(toy_hub):
    base = toy_hub.selector()
    for opts in ({"alpha": 0.3}, {"k_nodes": 2}, {"metric": "f1"}, {"normalize_z": True}):
        sel = toy_hub.selector(**opts)
        assert sel is not base and sel.fast_ is base.fast_ and sel._img_tables is base._img_tables, opts
        assert toy_hub.selector() is base  # the default is still the cached fit, unchanged
        assert base.config == MLLConfig()


@pytest.mark.parametrize("opts", [{"alpha": 0.3}, {"k_nodes": 2}, {"metric": "f1"}, {"alpha": 1.0, "k_nodes": 1}])
def test_an_override_gives_what_a_fresh_fit_with_that_config_gives(toy_hub, opts):
    got = toy_hub.select(TASK, 2, **opts)
    fresh = MLLSelector(toy_hub.settings, MLLConfig(**opts)).fit(list(toy_hub.model_ids), toy_hub.graph()).select(TASK, 2)
    np.testing.assert_array_equal(got.r, fresh.r)
    assert [c.models for c in got.classes] == [c.models for c in fresh.classes]
    default = toy_hub.select(TASK, 2)
    assert not np.array_equal(got.r, default.r) or opts == {"k_nodes": 2}  # the override took effect


def test_fit_time_options_need_a_fit(toy_hub):
    sel = toy_hub.selector()
    with pytest.raises(ConfigError, match="fit"):
        sel.with_query(text_embedder="hashing256")
    other = toy_hub.selector(text_embedder="hashing256")
    assert other.fast_ is not sel.fast_ and other.config.text_embedder == "hashing256"


@pytest.mark.parametrize("k", [0, -1, 4, True, 2.5])
def test_k_out_of_range_is_refused_with_the_range(toy_hub, k):
    with pytest.raises(SelectionError, match="k must be"):
        toy_hub.select(TASK, k)
