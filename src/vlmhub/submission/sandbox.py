"""Run the admission checker on a submitted model in a separate process with a time and a memory limit.

A submitted model is untrusted: it may hang, exhaust memory, crash the interpreter or return NaN. The checker
(:func:`vlmhub.models.checker.check_model`) therefore runs in a child process (``python -m
vlmhub.submission.sandbox``) whose address space is capped with ``RLIMIT_AS`` and which is killed (its whole
process group) when the wall-clock limit passes. Whatever happens, the caller gets a :class:`CheckOutcome`
with the reasons; the caller's process (a worker, the service) stays up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

__all__ = ["SandboxLimits", "CheckOutcome", "check_in_sandbox"]

Verdict = Literal["passed", "failed", "error", "timeout", "memory", "crashed"]
_MEMORY_EXIT = 86  # the child's exit code for MemoryError


@dataclass(frozen=True)
class SandboxLimits:
    """Wall-clock seconds and address-space bytes of one check (``None``: no memory cap)."""

    seconds: float = 900.0
    memory_bytes: int | None = 16 * 1024**3

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)) or not self.seconds > 0:
            raise ConfigError(f"SandboxLimits.seconds must be > 0 (got {self.seconds!r}).")
        m = self.memory_bytes
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 64 * 1024**2):
            raise ConfigError(f"SandboxLimits.memory_bytes must be at least 64 MiB or None (got {m!r}).")


@dataclass(frozen=True)
class CheckOutcome:
    """What the sandboxed check found: the verdict, one line per reason, the checker's report, the spec."""

    verdict: Verdict
    reasons: tuple[str, ...]
    seconds: float
    report: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    log_tail: str = field(default="", repr=False)

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "passed": self.passed, "reasons": list(self.reasons),
                "seconds": round(self.seconds, 3), "report": self.report, "spec": self.spec}


def check_in_sandbox(source: str, *, model_id: str, home: str | os.PathLike, limits: SandboxLimits | None = None,
                     zero_shot: bool = True, env: dict[str, str] | None = None) -> CheckOutcome:
    """Build the model ``source`` (an adapter source string, e.g. ``hf:/dir``) in a child process and run the
    admission checks on it there, under ``limits``. Never raises for anything the model does."""
    limits = limits or SandboxLimits()
    with tempfile.TemporaryDirectory(prefix="vlmhub-check-") as tmp:
        out = Path(tmp) / "outcome.json"
        args = json.dumps({"source": source, "model_id": model_id, "home": str(home), "zero_shot": bool(zero_shot),
                           "out": str(out), "memory_bytes": limits.memory_bytes})
        child_env = {**os.environ, **(env or {}), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
                     "TOKENIZERS_PARALLELISM": "false", "VLMHUB_HOME": str(home)}
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "vlmhub.submission.sandbox", args], env=child_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
            return CheckOutcome("timeout", (f"the check did not finish within {limits.seconds:g} s and was stopped; "
                                            "a model must load and embed the probe images within the hub's limit",),
                                time.monotonic() - t0, log_tail=_tail(log))
        seconds = time.monotonic() - t0
        tail = _tail(log)
        if proc.returncode == _MEMORY_EXIT or (proc.returncode != 0 and "MemoryError" in tail):
            cap = f"{limits.memory_bytes / 1024**3:.1f} GiB" if limits.memory_bytes else "the machine's memory"
            return CheckOutcome("memory", (f"the model ran out of memory (limit {cap}) while loading or running",),
                                seconds, log_tail=tail)
        if proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            return CheckOutcome("crashed", (f"the model crashed the checking process ({sig})",), seconds, log_tail=tail)
        if not out.is_file():
            last = tail.strip().splitlines()[-1] if tail.strip() else f"exit code {proc.returncode}"
            return CheckOutcome("crashed", (f"the checking process ended without a result: {last[:300]}",), seconds,
                                log_tail=tail)
        data = json.loads(out.read_text(encoding="utf-8"))
        return CheckOutcome(data["verdict"], tuple(data["reasons"]), seconds, data.get("report"), data.get("spec"),
                            log_tail=tail)


def _tail(log: bytes | None, n: int = 4000) -> str:
    return (log or b"")[-n:].decode("utf-8", "replace")


def _child(argv: list[str]) -> int:
    """The child side: build, check, write ``outcome.json`` (verdict, reasons, report, spec)."""
    args = json.loads(argv[0])
    out = Path(args["out"])
    if args.get("memory_bytes"):  # cap the address space before anything of the model is imported
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (args["memory_bytes"], args["memory_bytes"]))

    def write(verdict: str, reasons: list[str], report=None, spec=None) -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"verdict": verdict, "reasons": reasons, "report": report, "spec": spec}),
                       encoding="utf-8")
        os.replace(tmp, out)

    try:
        from dataclasses import replace

        from ..errors import VlmhubError
        from ..models.checker import CheckBudget, check_model
        from ..models.user_hub import build_from_source
        from ..settings import Settings

        settings = Settings(home=Path(args["home"]))
        try:
            model = build_from_source(args["source"], model_id=args["model_id"], settings=settings)
        except VlmhubError as exc:
            write("error", [f"the model could not be loaded: {exc}"])
            return 0
        report = check_model(model, budget=replace(CheckBudget(), zero_shot=args["zero_shot"]))
        reasons = [f"{r.name}: {r.detail}" for r in report.failures]
        write("passed" if report.passed else "failed", reasons, report.to_dict(), model.spec.to_dict())
        return 0
    except MemoryError:
        return _MEMORY_EXIT


if __name__ == "__main__":  # pragma: no cover - exercised through check_in_sandbox in a subprocess
    sys.exit(_child(sys.argv[1:]))
