"""The error hierarchy: every vlmhub error is also the matching builtin, and user-reachable code raises
vlmhub errors, never bare ValueError/RuntimeError (issue 11 item 7)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import vlmhub.errors as errors
from vlmhub.errors import ConfigError, NotFittedError, SelectionError, VlmhubError

SRC = Path(__file__).resolve().parents[1] / "src" / "vlmhub"

#: bare builtins that guard programming errors (an internal invariant, not something a user can cause)
INTERNAL = {
    ("models/registry.py", "RuntimeError"),          # a built-in model id declared twice
    ("tables/selectors/registry.py", "RuntimeError"),  # two selectors with one name
    ("tables/selectors/base.py", "RuntimeError"),    # a selector returned the wrong number of scores
    ("storage/embeddings.py", "ValueError"),         # caller passed ids and vectors of different lengths
    ("storage/textcache.py", "ValueError"),          # same, and non-finite vectors from the text model
    ("storage/atomic.py", "TypeError"),              # object arrays handed to the npz writer (never pickled)
    ("tables/selectors/base.py", "TypeError"),       # @register_selector on something that is no selector
    ("models/checker.py", "KeyError"),               # CheckReport.result(name): a Mapping-style lookup
    ("selection/blocks.py", "TypeError"),            # write_block given ranks of the wrong dtype by the fast path
    ("selection/blocks.py", "ValueError"),           # write_block given arrays of disagreeing shapes
    ("service/web/svg.py", "ValueError"),            # chart drawn from inconsistent series by the page code
    ("hubdb/artifacts.py", "TypeError"),             # object arrays handed to the artifact writer
    ("hubdb/schema.py", "ValueError"),               # a naive datetime bound by vlmhub's own code
    ("hubdb/migrations/env.py", "RuntimeError"),     # alembic's env run outside vlmhub.hubdb.migrate
}


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n != "VlmhubError"])
def test_every_error_is_a_vlmhub_error_and_a_builtin(name):
    cls = getattr(errors, name)
    assert issubclass(cls, VlmhubError)
    builtins = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (Exception, BaseException, object)]
    assert builtins, f"{name} subclasses no builtin exception: callers catching builtins would miss it"


def _bare_raises():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                if node.exc.func.id in ("ValueError", "RuntimeError", "TypeError", "KeyError"):
                    yield rel, node.exc.func.id, node.lineno


def test_no_bare_builtin_raises_outside_internal_invariants():
    bad = [f"{rel}:{line} raises {name}" for rel, name, line in _bare_raises() if (rel, name) not in INTERNAL]
    assert not bad, "raise a vlmhub.errors class (it also subclasses the builtin):\n" + "\n".join(bad)


def test_the_scan_finds_a_planted_bare_raise(tmp_path):
    tree = ast.parse("def f(x):\n    raise ValueError('bad x')\n")
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.exc.func.id == "ValueError"]
    assert len(found) == 1


def test_library_options_raise_vlmhub_errors_that_are_value_errors(settings):
    from vlmhub.reuse.ensemble import ensemble_scores
    from vlmhub.selection.equations import top_k_models
    from vlmhub.selection.mll import MLLSelector
    from vlmhub.selection.transferability.feature_based import gbc

    with pytest.raises(SelectionError, match="weighting"):
        ensemble_scores({"a": np.full((2, 2), 0.5)}, [["a"], ["a"]], weighting="loudest")
    with pytest.raises(SelectionError, match="k must"):
        top_k_models(np.ones((2, 3)), 0)
    with pytest.raises(NotFittedError, match="fit"):
        MLLSelector(settings).select(None)
    with pytest.raises(ConfigError, match="gaussian"):
        gbc(np.ones((4, 2)), np.array([0, 0, 1, 1]), gaussian="cubic")
    # and each is also the builtin a caller may catch
    with pytest.raises(ValueError):
        top_k_models(np.ones((2, 3)), 0)
