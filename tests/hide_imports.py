"""Make ``import NAME`` fail inside a test, as it does where an optional extra is not installed."""

from __future__ import annotations

import builtins


def hide_modules(monkeypatch, *names: str) -> None:
    """Until the test ends, importing any of ``names`` (or a submodule) raises ImportError."""
    real = builtins.__import__

    def guarded(name, *a, **k):
        if any(name == n or name.startswith(n + ".") for n in names):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", guarded)
