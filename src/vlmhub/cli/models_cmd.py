"""``vlmhub models``: list, add, check and remove zero-shot models.

::

    vlmhub models list [--json] [--tag TAG]
    vlmhub models add SOURCE [--id ID] [--no-check] [--no-zero-shot-check]
    vlmhub models check ID [--json] [--zero-shot]
    vlmhub models remove ID

SOURCE is e.g. ``open_clip:ViT-B-32/laion2b_s34b_b79k``, ``open_clip:hf-hub:timm/ViT-B-16-SigLIP``,
``open_clip:ViT-B-32@/path/ckpt.pt``, ``hf:openai/clip-vit-base-patch32`` or ``hf:/path/to/saved_dir``
(docs/models.md). Bad input raises :class:`~vlmhub.errors.VlmhubError`; ``cli/main.py`` reports it and exits 2.
``check`` exits 1 when the model fails a check.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "cmd_list", "cmd_add", "cmd_check", "cmd_remove"]


def _settings(args: argparse.Namespace):
    """The settings of this invocation (``args.settings``, else ``--home``, else the defaults)."""
    from ..settings import Settings, get_settings

    settings = getattr(args, "settings", None)
    if settings is None:
        home = getattr(args, "home", None)
        settings = Settings(home=home) if home else get_settings()
    return settings


def _catalog(args: argparse.Namespace):
    """The catalog of this invocation's hub home (built-ins + that home's own models)."""
    from ..models.catalog import Catalog

    return Catalog(_settings(args))


def _budget(args: argparse.Namespace):
    from ..models.checker import CheckBudget

    return CheckBudget(zero_shot=bool(getattr(args, "zero_shot", False)))


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def cmd_list(args: argparse.Namespace) -> int:
    """Print every registered model id with family, backbone, parameters and ImageNet top-1."""
    catalog = _catalog(args)
    specs = [catalog.spec(i) for i in catalog.ids(tag=getattr(args, "tag", None))]
    out = sys.stdout
    if getattr(args, "json", False):
        json.dump([s.to_dict() for s in specs], out, indent=1)
        out.write("\n")
        return 0
    rows = [("id", "family", "backbone", "params(M)", "IN top-1", "tags")]
    for s in specs:
        top1 = f"{100 * s.imagenet_top1:.1f}" if s.imagenet_top1 is not None and s.imagenet_top1 <= 1 else _fmt(s.imagenet_top1)
        rows.append((s.id, s.family, s.backbone, _fmt(s.params_m, ".2f"), top1, ",".join(s.tags)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    if not specs:
        out.write("(no models registered)\n")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """Load, check and persist a model; print its spec."""
    from ..models.user_hub import add_model, models_file

    settings = _settings(args)
    zero_shot = not getattr(args, "no_zero_shot_check", False)
    spec = add_model(args.source, model_id=args.id, settings=settings, check=not args.no_check, budget=_budget(args),
                     zero_shot_check=zero_shot)
    checked = "without checks" if args.no_check else "checks passed" if zero_shot else "checks passed, zero-shot check skipped"
    sys.stdout.write(
        f"added {spec.id} ({spec.family}, {spec.backbone}, embed_dim {spec.embed_dim}, {checked}) to {models_file(settings)}\n"
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Load a registered model and run the admission checks; exit 1 when one fails."""
    from ..models.checker import check_model
    model = _catalog(args).create(args.model_id)
    report = check_model(model, budget=_budget(args))
    if getattr(args, "json", False):
        json.dump(report.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report.format() + "\n")
    return 0 if report.passed else 1


def cmd_remove(args: argparse.Namespace) -> int:
    """Remove a user model from the hub."""
    from ..models.user_hub import remove_model

    spec = remove_model(args.model_id, settings=_settings(args))
    sys.stdout.write(f"removed {spec.id}\n")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``models`` subcommand (and its actions) to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "models",
        help="list, add, check and remove zero-shot models",
        description="List the registered zero-shot models, or add, check and remove your own CLIP-family models.",
    )
    p.set_defaults(func=cmd_list, json=False, tag=None)
    sub = p.add_subparsers(dest="models_action", metavar="ACTION")

    pl = sub.add_parser("list", help="list registered models (the default action)")
    pl.add_argument("--json", action="store_true", help="print the specs as JSON")
    pl.add_argument("--tag", default=None, help="only models with this tag (e.g. default, user, test)")
    pl.set_defaults(func=cmd_list)

    pa = sub.add_parser(
        "add",
        help="load, check and register a CLIP-family model",
        description="SOURCE: open_clip:ARCH/TAG | open_clip:hf-hub:ORG/NAME | open_clip:local-dir:DIR | "
        "open_clip:ARCH@CHECKPOINT | hf:ORG/NAME | hf:DIR (a save_pretrained folder).",
    )
    pa.add_argument("source", help="model source, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k or hf:/path/to/dir")
    pa.add_argument("--id", default=None, help="model id (default: derived from the source)")
    pa.add_argument("--no-check", action="store_true", help="skip the admission checks (not recommended)")
    pa.add_argument("--no-zero-shot-check", action="store_true",
                    help="skip only the zero-shot sanity check (36 colour swatches must be classified clearly above "
                    "chance, which refuses e.g. randomly initialised weights); the other checks still run")
    pa.add_argument("--zero-shot", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    pa.set_defaults(func=cmd_add)

    pc = sub.add_parser("check", help="run the admission checks on a registered model")
    pc.add_argument("model_id", metavar="ID")
    pc.add_argument("--json", action="store_true", help="print the report as JSON")
    pc.add_argument("--zero-shot", action="store_true", help="also run the colour zero-shot sanity check")
    pc.set_defaults(func=cmd_check)

    pr = sub.add_parser("remove", help="remove a model added with `models add`")
    pr.add_argument("model_id", metavar="ID")
    pr.set_defaults(func=cmd_remove)
    return p
