"""Every benchmark's ``--smoke`` mode runs as a subprocess and prints its figures, so none can rot.

Each case names the figures the script must print (a regular expression over its stdout). Benchmarks never
assert timings: these tests check that the figures and ratios are *printed*, in the shape documented in
benchmarks/README.md, and for the two that compare against an independent reference (``bench_selection``,
``bench_reuse``) that the comparison came out equal. A benchmark script without a case here fails
:func:`test_every_benchmark_has_a_smoke_case`.

The subprocesses run hermetically: the hub home is a temp folder, WordNet is the session's copy, and the
working directory is the test's temp folder. The ones that build a labeled toy hub (WordNet graph: ~20 s
on a loaded 2-core box) or load MiniLM / EfficientNet weights are marked ``slow``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SKIP_EXIT = 77  # benchmarks/_common.py: the script cannot run here (e.g. weights not installed)
NUM = r"-?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class Case:
    script: str
    figures: tuple[tuple[str, int], ...]  # (regex, lines it must match at least)
    slow: bool = False
    args: tuple[str, ...] = ()  # besides --smoke (a second mode of the same script)


def _score_names() -> list[str]:
    from vlmhub.selection.transferability import score_names

    return score_names()


def _selector_names() -> list[str]:
    from vlmhub.tables import list_selectors

    return list_selectors()


CASES = (
    Case("reference_mll.py", ((r"^reference_mll self-check: ok", 1),)),
    # per metric (precision, f1) and class count (4, 12): ref ms, fast ms, select ms, ratio, "==" check
    Case("bench_selection.py", ((rf"^\s+(4|12)\s+\d+\s+\d+\s+\d+\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}x\s+==$", 4),
                                (rf"^query-time overrides .* k=1 {NUM} ms \({NUM}x, no refit\)", 2))),
    Case("bench_transferability.py", ((r"^(?P<name>\w+)\s+" + rf"{NUM}\s+{NUM}\s+{NUM}", "scores"),)),
    Case("bench_tables.py", ((r"^\| synthetic \| (?P<name>[\w-]+) \| (" + NUM + r" \| " + NUM + r"|- \| - \(needs .*\)) \|$",
                              "selectors"),)),
    Case("table_oracles.py", ((rf"^\| [\w-]+ \| {NUM} \| ({NUM}|-) \| .+ \|$", 8),)),
    Case("bench_outofcore.py", ((rf"^\s+(3|12)\s+(in-memory|blocks)\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+\d+\s+\d+\s+{NUM}\s+\d+\s+\d+\s+\d+\s+[0-9a-f]{{12}}$", 4),)),
    Case("bench_web.py", ((rf"^(catalog|model|compare|task|predict form)\s.*\s(200)\s+\d+\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}$", 5),)),
    Case("bench_text_cache.py", ((rf"^\s+(10|50)\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}$", 2),)),
    Case("bench_reuse.py", ((rf"ensemble/sum time ratio {NUM}", 1),
                            (rf"^  toy-[abc]\s+alone {NUM} img/s", 3),
                            (rf"^(reuse|labeling|selection)\s+{NUM}\s+{NUM}", 3),
                            (r"reference == fast: True", 1))),
    # raw fwd, prep, heads, label, ray x1, ray x2, ratio, ray/1, ray/2; then per Ray run the labels' byte check
    Case("bench_labeling.py", ((rf"^efficientnet-lite0(\s+{NUM}){{9}}\s+fwd", 1),
                               (rf"^  ray x[12]: end to end {NUM} img/s, .* single-process labels: True$", 2)), slow=True),
    Case("bench_service.py", ((rf"^\| (select|predict|rank-models) .* \| {NUM} / {NUM} \| {NUM} / {NUM} \| {NUM} \|$", 3),
                              (rf"^cold start \(service \+ first select\): {NUM} s", 1),
                              (rf"^\| (GET|POST) /v1/[^|]+ \| \d+ \| 0 \| {NUM} \| {NUM} \|$", 8),
                              (rf"req/s, 0 errors$", 2), (rf"^server RSS before / after: {NUM} / {NUM} MB", 1)), slow=True),
    # 2 `vlmhub worker` processes x 4 submitted tiny CLIPs under load: the exactly-once checks passed ("ok")
    Case("bench_workers.py", ((rf"^jobs: \d+ label jobs \(4 models x \[\d+\] shards\), \d+ done, attempts \[\(1, \d+\)\], "
                               r"labeled per worker: w1 \d+, w2 \d+$", 1),
                              (rf"^time: workers started -> all 4 models checked, labeled, published: {NUM} s", 1),
                              (rf"^load during labeling: 4 clients, \d+ requests in {NUM} s: {NUM} req/s, p50 {NUM} ms, "
                               rf"p95 {NUM} ms, 0 errors$", 1),
                              (rf"^\| (GET|POST) /v1/[^|]+ \| \d+ \| 0 \| {NUM} \| {NUM} \|$", 5),
                              (r"^labels: \d+ shard artifacts and 4 published labels byte-identical to the single-worker run$", 1),
                              (r"^no lost or duplicated job: ok$", 1)), slow=True),
    # the same with the workers' shards embedded on a Ray cluster started for the run (1 actor per worker)
    Case("bench_workers.py", ((rf"^jobs: \d+ label jobs \(4 models x \[\d+\] shards\), \d+ done, attempts \[\(1, \d+\)\], "
                               r"labeled per worker: w1 \d+, w2 \d+$", 1),
                              (r"^2 `vlmhub worker` processes, on Ray \(1 actors per worker\)", 1),
                              (r"^labels: \d+ shard artifacts and 4 published labels byte-identical to the single-worker run$", 1),
                              (r"^no lost or duplicated job: ok$", 1)), slow=True, args=("--ray-workers", "1")),
    Case("measure_imagenet_top1.py", ((r"^toy-[abc]\t[01]\.\d{3}$", 3),), slow=True),
    Case("mll_variants.py", ((rf"^\| (precision|f1) \| (entropy|inverse_entropy|uniform) \| {NUM} / {NUM} \| {NUM} \| {NUM} \|$", 6),
                             (rf"^References: color-task: INB {NUM}, best single {NUM}, oracle {NUM}$", 1)), slow=True),
)


def _param(case: Case):
    name = case.script[:-3] + "".join(f"-{a.lstrip('-')}" for a in case.args)
    return pytest.param(case, id=name, marks=[pytest.mark.slow] if case.slow else [])


def test_every_benchmark_has_a_smoke_case():
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts == {c.script for c in CASES}, "add a Case (and a --smoke mode) for every benchmark script"
    for c in CASES:
        assert "--smoke" in (BENCH / c.script).read_text(), f"{c.script} documents no --smoke mode"


def _run(script: str, tmp_path: Path, wordnet_dir: Path, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "VLMHUB_HOME": str(tmp_path / "home"),
        "VLMHUB_WORDNET": str(wordnet_dir),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TMPDIR": str(tmp_path),
    })
    import shutil
    import tempfile

    # Ray's sockets live under RAY_TMPDIR (else TMPDIR): an AF_UNIX path must stay under 108 bytes
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    try:
        return subprocess.run([sys.executable, str(BENCH / script), "--smoke", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_smoke_mode_prints_its_figures(case: Case, tmp_path, wordnet_dir):
    p = _run(case.script, tmp_path, wordnet_dir, case.args)
    if p.returncode == SKIP_EXIT:
        pytest.skip(next((ln for ln in p.stdout.splitlines() if ln.startswith("SKIP:")), "SKIP (no reason printed)"))
    assert p.returncode == 0, f"{case.script} --smoke exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    for pattern, want in case.figures:
        rx = re.compile(pattern)
        hits = [m for m in map(rx.search, lines) if m]
        if isinstance(want, str):  # one line per registered name (the registry is the test matrix)
            names = {"scores": _score_names, "selectors": _selector_names}[want]()
            assert sorted(m.group("name") for m in hits) == sorted(names), f"{case.script}: {pattern}\n{p.stdout}"
        else:
            assert len(hits) >= want, f"{case.script}: want {want} lines matching {pattern!r}, got:\n{p.stdout}"
    # nothing was left in the temp folder's hub home by a benchmark that promised throw-away hubs
    leftovers = [q.name for q in tmp_path.iterdir() if q.name.startswith("vlmhub-bench-")]
    assert not leftovers, f"{case.script} left {leftovers} behind"
