"""``vlmhub db ...`` and ``vlmhub token ...``: the hub database and its API tokens, from the command line.

::

    vlmhub db upgrade [--json]              migrate the schema; the first run imports the JSON home
    vlmhub db check [--json]                verify every artifact's sha256; list missing files and orphans
    vlmhub db grow --sample-set S ... [--max-images N] [--json]
                                            grow the graph: enqueue labels of its new and changed nodes only
    vlmhub db jobs [--json]                 label-job progress per model and graph version, and the active workers
    vlmhub token create --user NAME --role reader|submitter|admin [--expires-days N] [--note TEXT] [--json]
    vlmhub token revoke TOKEN_ID [--json]
    vlmhub token list [--user NAME] [--json]

The database is the home's SQLite file, or ``$VLMHUB_DATABASE_URL`` (docs/hub.md). ``token create`` prints the
token once (stdout, alone on its line, so ``$(vlmhub token create ...)`` captures it); only a salted hash is
stored. ``db check`` exits with 1 when it finds damage (a bad checksum, a row without its file, a done job
without its artifact); orphan and partial files are listed but are not damage. ``db jobs`` only reads: in a home
without a database it says to run ``vlmhub db upgrade`` instead of creating one.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

__all__ = ["register", "cmd_db_upgrade", "cmd_db_check", "cmd_db_grow", "cmd_db_jobs", "cmd_token_create", "cmd_token_revoke", "cmd_token_list"]


def _actor() -> str:
    """Who runs the command, for the audit log: ``local:<os user>``."""
    try:
        return f"local:{getpass.getuser()}"[:100]
    except (KeyError, OSError):  # no passwd entry / no login name in a container
        return "local"


def _open(args: argparse.Namespace):
    from ..hubdb import HubDB

    return HubDB(args.settings)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from ..hubdb import upgrade

    report = upgrade(args.settings)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"{report.url}: schema {report.from_revision or '(new)'} -> {report.to_revision}")
    imp = report.imported
    if imp is not None:
        print(f"imported the JSON home: {imp.models} models, {imp.graphs} graph versions, "
              f"{imp.label_artifacts} label shards")
        for note in imp.skipped:
            print(f"  skipped: {note}")
    return 0


def cmd_db_check(args: argparse.Namespace) -> int:
    from ..hubdb.artifacts import check_artifacts

    with _open(args) as db:
        report = check_artifacts(db)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{report.checked} artifacts checked: {'ok' if report.ok else 'DAMAGED'}")
        for title, items, hint in (
            ("checksum mismatch", report.bad_checksum, "re-label the model"),
            ("file missing", report.missing_files, "re-label the model"),
            ("done job without artifact", report.jobs_without_artifact, "re-label the model"),
            ("orphan file (no row)", report.orphan_files, "harmless; left by a crash before its row"),
            ("partial file", report.partial_files, "harmless; a write cut off by a crash"),
        ):
            if items:
                print(f"{title} ({len(items)}; {hint}):")
                for item in items:
                    print(f"  {item}")
    return 0 if report.ok else 1


def cmd_db_grow(args: argparse.Namespace) -> int:
    from ..submission.growth import grow_graph

    with _open(args) as db:
        report = grow_graph(db, args.settings, args.sample_set, max_images=args.max_images, actor=_actor())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    if report.jobs == 0 and report.version == report.base_version:
        print(f"graph {report.base_version}: these sets add nothing; nothing to label")
        return 0
    print(f"graph {report.base_version} -> {report.version}: {len(report.new_nodes)} new nodes, "
          f"{len(report.changed_nodes) - len(report.new_nodes)} changed, {report.new_images} new images")
    print(f"{report.jobs} label jobs for {len(report.models)} models; run `vlmhub worker`: the grown graph becomes "
          "current once every ready model is labeled on it")
    return 0


def _when(t) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S} UTC"


def cmd_db_jobs(args: argparse.Namespace) -> int:
    from ..hubdb.engine import open_existing
    from ..hubdb.jobs import job_progress

    with open_existing(args.settings) as db:
        progress = job_progress(db)
    if args.json:
        print(json.dumps(progress.to_dict(), indent=2))
        return 0
    if not progress.models:
        print("no label jobs in the hub database (submissions and `vlmhub db grow` enqueue them)")
        return 0
    rows = [("model", "graph", "done/total", "%", "queued", "leased", "failed")]
    for m in progress.models:
        c = m.counts
        leased = f"{c.leased} ({c.expired} expired)" if c.expired else str(c.leased)
        rows.append((m.model_id, m.graph_version, f"{c.done}/{c.total}", f"{100 * c.fraction:.1f}", str(c.queued),
                     leased, str(c.failed)))
    t = progress.total
    rows.append(("all", "", f"{t.done}/{t.total}", f"{100 * t.fraction:.1f}", str(t.queued),
                 f"{t.leased} ({t.expired} expired)" if t.expired else str(t.leased), str(t.failed)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0 or j == len(rows) - 2:
            print("  ".join("-" * w for w in widths))
    if progress.workers:
        print(f"{len(progress.workers)} active worker{'s' if len(progress.workers) != 1 else ''}:")
        for w in progress.workers:
            print(f"  {w.worker_id}: {w.jobs} job{'s' if w.jobs != 1 else ''} of {', '.join(w.models)}; "
                  f"last heartbeat {_when(w.last_heartbeat)}, lease until {_when(w.lease_expires_at)}")
    elif progress.active:
        print("no active worker: start one with `vlmhub worker`")
    else:
        print("idle: no label job is queued or leased")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from ..errors import ConfigError
    from ..hubdb.auth import create_token

    expires = None
    if args.expires_days is not None:
        if not args.expires_days > 0:
            raise ConfigError(f"--expires-days must be positive (got {args.expires_days}); omit it for no expiry.")
        expires = timedelta(days=args.expires_days)
    with _open(args) as db:
        issued = create_token(db, args.user, args.role, expires_in=expires, note=args.note or "", actor=_actor())
    if args.json:
        print(json.dumps({"token": issued.token, **issued.info.to_dict()}, indent=2))
    else:
        print(issued.token)
        until = f"until {issued.info.expires_at:%Y-%m-%d %H:%M} UTC" if issued.info.expires_at else "until revoked"
        print(f"token {issued.info.token_id} for {issued.info.user} ({issued.info.role.value}), valid {until}. "
              "It is shown only now: store it safely.", file=sys.stderr)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from ..hubdb.auth import revoke_token

    with _open(args) as db:
        info = revoke_token(db, args.token_id, actor=_actor())
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(f"token {info.token_id} of {info.user} revoked at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from ..hubdb.auth import list_tokens

    with _open(args) as db:
        tokens = list_tokens(db, args.user)
    if args.json:
        print(json.dumps([t.to_dict() for t in tokens], indent=2))
        return 0
    for t in tokens:
        state = "active" if t.active() else ("revoked" if t.revoked_at else "expired")
        print(f"{t.token_id}  {t.user:<20} {t.role.value:<9} {state:<7} created {t.created_at:%Y-%m-%d %H:%M}"
              + (f"  {t.note}" if t.note else ""))
    return 0


def register(sub) -> None:
    """Add the ``db`` and ``token`` command groups to the top-level subparsers."""
    db = sub.add_parser("db", help="the hub database: upgrade (migrations, JSON-home import), check (artifacts), "
                        "grow (the graph), jobs (label progress)")
    dsub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    sp = dsub.add_parser("upgrade", help="migrate the schema to the newest revision; the first run imports the JSON home")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_db_upgrade)
    sp = dsub.add_parser("check", help="verify every artifact's checksum and list missing files and orphans "
                         "(exit 1 on damage)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_db_check)
    sp = dsub.add_parser("grow", help="grow the semantic graph with more concept-sample sets; label jobs cover only "
                         "its new and changed nodes (run `vlmhub worker`)")
    sp.add_argument("--sample-set", action="append", required=True, metavar="SET",
                    help="a concept-sample set (folder of <wnid>/<image>, or a known set name); give the current "
                         "graph's sets and the new ones (repeat the option)")
    sp.add_argument("--max-images", type=int, help="images per node (default: the current graph's)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_db_grow)
    sp = dsub.add_parser("jobs", help="label-job progress per model and graph version (done/total, failed, leased) "
                         "and the workers holding leases now")
    sp.add_argument("--home", default=argparse.SUPPRESS, help="hub home (default: $VLMHUB_HOME; same as vlmhub --home)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_db_jobs)

    tok = sub.add_parser("token", help="API tokens: create (printed once), revoke, list")
    tsub = tok.add_subparsers(dest="token_command", metavar="TOKEN_COMMAND", required=True)
    sp = tsub.add_parser("create", help="create a token for a user (created if new) and print it once")
    sp.add_argument("--user", required=True, help="user name (letters, digits, _ . @ -)")
    sp.add_argument("--role", required=True, choices=["reader", "submitter", "admin"])
    sp.add_argument("--expires-days", type=float, help="lifetime in days (default: until revoked)")
    sp.add_argument("--note", help="a note shown by `vlmhub token list`")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_token_create)
    sp = tsub.add_parser("revoke", help="revoke a token by its id (the 12 hex digits after vlmhub_)")
    sp.add_argument("token_id")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_token_revoke)
    sp = tsub.add_parser("list", help="list tokens (ids, users, roles, state; never the secrets)")
    sp.add_argument("--user")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_token_list)
