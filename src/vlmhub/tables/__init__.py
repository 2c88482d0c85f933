"""Performance tables as a first-class input: select CLIP-style models from published results.

* records: :class:`PerformanceTable`, :class:`ModelInfo`, :class:`TaskDescription`
* I/O: :func:`load_table` (``"openclip"``, ``"lovm"`` or a generic long CSV), :func:`save_generic_table`,
  :func:`load_task_json`
* protocol: :func:`leave_one_dataset_out`, :func:`run_benchmark`, metrics in :mod:`.metrics` (by :mod:`vlmhub.ranking`)
* what the CLI and the service run: :func:`benchmark_tables` -> :class:`TablesBenchmark`,
  :func:`rank_table_models` -> :class:`ModelRanking`
* selectors: :func:`get_selector`, :func:`list_selectors` (``inb``, ``best-mean``, ``modelgpt``, ``mll``,
  ``fennec``, ``guided-fm``, ``model-spider``, ``vlmhub``, ``vlmhub-ensemble``); default
  :data:`DEFAULT_SELECTOR`.

See docs/tables.md. Nothing heavy is imported here (torch and the text model load on first use).
"""

from __future__ import annotations

from .benchmark import ModelRanking, TablesBenchmark, benchmark_tables, check_selector_names, rank_table_models
from .io import (
    GENERIC_COLUMNS,
    MODELGPT_FEATURES,
    descriptions_json_text,
    generic_csv_text,
    load_generic_table,
    load_lovm_table,
    load_openclip_table,
    load_table,
    load_task_json,
    save_generic_table,
)
from .metrics import TargetMetrics, target_metrics, top_k_overlap
from .protocol import SelectorResult, TargetResult, leave_one_dataset_out, run_benchmark, target_indices
from .records import ArchFamily, ModelInfo, PerformanceTable, TaskDescription, parse_model_name, task_from_dict
from .selectors import DEFAULT_SELECTOR, TableSelector, get_selector, list_selectors, register_selector

__all__ = [
    "ArchFamily",
    "ModelInfo",
    "TaskDescription",
    "PerformanceTable",
    "parse_model_name",
    "task_from_dict",
    "GENERIC_COLUMNS",
    "MODELGPT_FEATURES",
    "load_table",
    "load_openclip_table",
    "load_lovm_table",
    "load_generic_table",
    "save_generic_table",
    "generic_csv_text",
    "descriptions_json_text",
    "load_task_json",
    "TargetMetrics",
    "target_metrics",
    "top_k_overlap",
    "TargetResult",
    "SelectorResult",
    "leave_one_dataset_out",
    "run_benchmark",
    "target_indices",
    "TableSelector",
    "get_selector",
    "list_selectors",
    "register_selector",
    "DEFAULT_SELECTOR",
    "TablesBenchmark",
    "ModelRanking",
    "benchmark_tables",
    "rank_table_models",
    "check_selector_names",
]
