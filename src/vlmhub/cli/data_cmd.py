"""``vlmhub data``: the data registry from the command line (thin: parse, call :mod:`vlmhub.assets`, render).

::

    vlmhub data list [--json]                 every asset: size, licence, sha256, where it is now
    vlmhub data fetch NAME... | --all [--force] [--base-url URL]
    vlmhub data verify [NAME...] [--json]     recompute checksums of what is present
    vlmhub data pack NAME... --out DIR        archives for a data server (VLMHUB_DATA_URL)

Where an asset is: ``data-dir`` (VLMHUB_DATA / --data-dir), ``user`` (fetched into the user data dir:
"cached"), ``mirror`` (shared/data beside a checkout or VLMHUB_MIRROR), ``package`` (inside vlmhub),
``home``/``system`` (WordNet's hub copy / Debian's files), or ``missing``.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register", "cmd_data_list", "cmd_data_fetch", "cmd_data_verify", "cmd_data_pack", "list_rows"]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def list_rows(settings) -> list[dict]:
    """One dict per registered asset: name, kind, size, files, licence, sha256, status, path, packaged."""
    from ..assets import load_registry, locate

    rows = []
    for a in load_registry().assets:
        loc = locate(a, settings)
        rows.append({
            "name": a.name, "kind": a.kind, "layout": a.layout, "size": a.size, "files": a.files, "licence": a.licence,
            "sha256": a.sha256, "status": "cached" if loc.source == "user" else loc.source,
            "path": str(loc.path) if loc.path else None, "packaged": a.packaged, "fetchable": a.fetchable,
            "source": a.source, "citation": a.citation,
        })
    return rows


def cmd_data_list(args: argparse.Namespace) -> int:
    rows = list_rows(args.settings)
    if args.json:
        out = {"user_data_dir": str(args.settings.user_data_dir),
               "roots": [{"source": s, "path": str(p)} for s, p in args.settings.data_roots], "assets": rows}
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'name':<{w}}  {'kind':<7} {'size':>9}  {'status':<8}  {'sha256':<12}  licence")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['kind']:<7} {_size(r['size']):>9}  {r['status']:<8}  {r['sha256'][:12]}  {r['licence']}")
    order = " -> ".join(f"{s} {p}" for s, p in args.settings.data_roots)
    print(f"\nlookup order: {order} -> package; fetch writes to {args.settings.user_data_dir}")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from ..assets import fetch_many, load_registry
    from ..errors import ConfigError

    registry = load_registry()
    if args.all == bool(args.names):
        raise ConfigError("name the assets to fetch (`vlmhub data list` shows them) or pass --all, not both.")
    names = list(registry.names()) if args.all else args.names
    for n in names:
        registry.get(n)  # unknown names fail before anything downloads

    def done(loc) -> None:
        if not args.quiet:
            verb = "fetched into" if loc.source == "user" else f"already present ({loc.source}):"
            print(f"{loc.asset.name}: {verb} {loc.path}")

    if args.all and not args.force:  # --all fetches what has a download; the rest is reported, not an error
        from ..assets import locate

        skip = [n for n in names if not registry.get(n).fetchable and not args.settings.data_url
                and not args.base_url and not locate(n, args.settings).found]
        for n in skip:
            print(f"{n}: skipped (no public download; use a mirror: VLMHUB_DATA or VLMHUB_DATA_URL)", file=sys.stderr)
        names = [n for n in names if n not in skip]
    fetch_many(names, args.settings, force=args.force, base_url=args.base_url, on_done=done, registry=registry)
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    from ..assets import verify

    results = verify(args.names or None, args.settings)
    if args.json:
        json.dump([{"name": v.name, "status": v.status, "source": v.source, "path": str(v.path) if v.path else None,
                    "expected": v.expected, "actual": v.actual} for v in results], sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for v in results:
            extra = f"  (sha256 {v.actual[:12]}, registry {v.expected[:12]})" if v.status == "mismatch" else ""
            print(f"{v.name}: {v.status}{' in ' + v.source if v.path else ''}{extra}")
    bad = [v.name for v in results if v.status == "mismatch" or (args.names and v.status == "missing")]
    if bad and not args.json:
        print(f"vlmhub: {len(bad)} asset(s) failed: {', '.join(bad)}; fetch them again with "
              f"`vlmhub data fetch --force {' '.join(bad)}`", file=sys.stderr)
    return 1 if bad else 0


def cmd_data_pack(args: argparse.Namespace) -> int:
    from ..assets import pack

    for n in args.names:
        print(f"{n}: {pack(n, args.out, args.settings)}")
    return 0


def register(subparsers) -> None:
    """Add ``data list|fetch|verify|pack`` to an argparse sub-parser collection."""
    dp = subparsers.add_parser("data", help="the data registry: list, fetch, verify, pack data assets")
    sub = dp.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    sp = sub.add_parser("list", help="every registered asset: size, licence, sha256, where it is now")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_data_list)

    sp = sub.add_parser("fetch", help="download assets into the user data dir (checksummed; needs vlmhub[data])")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("--all", action="store_true", help="every asset that is not present yet")
    sp.add_argument("--force", action="store_true", help="download again even when a copy exists")
    sp.add_argument("--base-url", help="a vlmhub data server tried first (default: $VLMHUB_DATA_URL)")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.set_defaults(func=cmd_data_fetch)

    sp = sub.add_parser("verify", help="recompute the checksums of the assets present (exit 1 on a mismatch)")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_data_verify)

    sp = sub.add_parser("pack", help="write <out>/archives/NAME.tar of folder assets, for a data server")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("--out", required=True, help="folder to write archives/ into")
    sp.set_defaults(func=cmd_data_pack)
