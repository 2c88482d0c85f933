"""``vlmhub submit`` and ``vlmhub worker``: the submission stage from the command line.

::

    vlmhub submit PACKAGE [--id ID] [--token TOKEN] [--hub URL] [--json]
    vlmhub worker [--name NAME] [--forever] [--poll SECONDS] [--check-seconds S] [--check-memory-gb G]
                  [--no-zero-shot-check] [--nodes-per-shard N]

PACKAGE is a model folder (a transformers ``save_pretrained`` folder, or an open_clip architecture with a
``.safetensors`` state dict and ``vlmhub.json``) or an archive of one (.zip / .tar.gz). The token comes from
``--token`` or ``VLMHUB_TOKEN`` (``vlmhub token create --user NAME --role submitter``). Without ``--hub`` the
package goes into this machine's hub home; with ``--hub http://host:port`` to a running ``vlmhub serve``.
A worker checks submissions in a sandbox and labels them; run any number, on any machines sharing the database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

__all__ = ["register", "cmd_submit", "cmd_worker"]


def _settings(args: argparse.Namespace):
    from ..settings import Settings, get_settings

    settings = getattr(args, "settings", None)
    if settings is not None:
        return settings
    return Settings(home=Path(args.home)) if getattr(args, "home", None) else get_settings()


def _package_bytes(path: str) -> bytes:
    from ..errors import PackageError
    from ..submission import pack_folder

    p = Path(path)
    if p.is_dir():
        return pack_folder(p)
    if p.is_file():
        return p.read_bytes()
    raise PackageError(f"{path} is neither a model folder nor a package archive; pass the save_pretrained folder "
                       "or a .zip / .tar.gz of it.")


def _post_remote(url: str, token: str, data: bytes, model_id: str | None) -> dict:
    """POST the package to ``url``/v1/submissions as multipart/form-data (stdlib only)."""
    import urllib.error
    import urllib.request

    from ..errors import DownloadError, VlmhubError

    boundary = uuid.uuid4().hex
    parts = []
    if model_id:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="model_id"\r\n\r\n{model_id}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="package"; filename="package.zip"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url.rstrip("/") + "/v1/submissions", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                          "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            problem = json.loads(exc.read())
        except ValueError:
            problem = {}
        detail = problem.get("detail") or (problem.get("error") or {}).get("message") or exc.reason
        raise VlmhubError(f"the hub at {url} refused the submission (HTTP {exc.code}): {detail}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot reach the hub at {url}: {exc.reason}. Is `vlmhub serve` running there?") from None


def cmd_submit(args: argparse.Namespace) -> int:
    from ..errors import AuthenticationError

    token = args.token or os.environ.get("VLMHUB_TOKEN")
    if not token:
        raise AuthenticationError("submitting needs a submitter token: pass --token or set VLMHUB_TOKEN "
                                  "(an admin creates one with `vlmhub token create --user NAME --role submitter`).")
    data = _package_bytes(args.package)
    if args.hub:
        out = _post_remote(args.hub, token, data, args.id)
    else:
        from ..hubdb import HubDB
        from ..hubdb.auth import authenticate
        from ..submission.workflow import submit

        settings = _settings(args)
        with HubDB(settings) as db:
            sub = submit(db, settings, authenticate(db, token), data, model_id=args.id)
            out = sub.to_dict()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"submission {out['id']}: model {out['model_id']} submitted; a worker checks and labels it "
              f"(`vlmhub worker`), progress at GET /v1/submissions/{out['id']}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from ..hubdb import HubDB
    from ..submission import PackageLimits, SandboxLimits
    from ..submission.workflow import WorkflowConfig, process

    settings = _settings(args)
    config = WorkflowConfig(package=PackageLimits(), zero_shot_check=not args.no_zero_shot_check,
                            sandbox=SandboxLimits(seconds=args.check_seconds,
                                                  memory_bytes=int(args.check_memory_gb * 1024**3) if args.check_memory_gb else None),
                            nodes_per_shard=args.nodes_per_shard, ray=_worker_ray(args, settings))
    name = args.name or f"{os.uname().nodename}-{os.getpid()}"

    def show(step) -> None:  # one line per step as it happens (a --forever worker runs for days)
        print(f"{step.kind:9s} {step.model_id or '':24s} {step.detail}", file=sys.stderr, flush=True)

    import signal
    import threading

    stop = threading.Event()

    def ask_to_stop(signum, _frame) -> None:  # SIGTERM (docker stop, Kubernetes) / Ctrl-C: finish the step, exit
        if stop.is_set():
            raise KeyboardInterrupt  # asked twice: stop now (leases expire and other workers take the shards)
        print(f"worker {name}: {signal.Signals(signum).name}: stopping after this step", file=sys.stderr, flush=True)
        stop.set()

    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers can only be set there
    handlers = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
    where = "in this process" if config.ray is None else \
        f"on Ray ({config.ray.resolved_address(settings) or 'a local Ray'}, {config.ray.workers} actors)"
    try:
        with HubDB(settings) as db:
            print(f"worker {name}: started on the {db.engine.dialect.name} hub database, labeling {where}"
                  f"{'; polls every ' + format(args.poll, 'g') + ' s when idle' if args.forever else ''}",
                  file=sys.stderr, flush=True)
            steps = process(db, settings, name, config=config, idle_exit=not args.forever, poll_s=args.poll,
                            on_step=show, stop=stop)
    finally:
        for sig, old_handler in handlers.items():
            signal.signal(sig, old_handler)
    print(f"worker {name}: {len(steps)} steps", file=sys.stderr)
    return 0


def _worker_ray(args: argparse.Namespace, settings):
    """The worker's Ray: ``--ray [ADDRESS]``, else ``VLMHUB_RAY_ADDRESS`` when set, unless ``--no-ray``."""
    if args.no_ray:
        if args.ray is not None:
            from ..errors import ConfigError

            raise ConfigError("--ray and --no-ray contradict each other: pass one of them.")
        return None
    if args.ray is None and not settings.ray_address:
        return None
    from ..labeling.ray_backend import RayOptions

    workers = args.ray_workers if args.ray_workers is not None else settings.num_workers
    return RayOptions(address=args.ray or None, workers=workers)


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
        return v
    return parse


def register(subparsers) -> None:
    """Add ``submit`` and ``worker`` to an argparse sub-parser collection."""
    sp = subparsers.add_parser("submit", help="submit a model package to the hub (a submitter token)")
    sp.add_argument("package", help="a save_pretrained folder, or a .zip / .tar.gz model package")
    sp.add_argument("--id", help="model id (default: vlmhub.json's id, else sub-<sha256 prefix>)")
    sp.add_argument("--token", help="submitter token (default: $VLMHUB_TOKEN)")
    sp.add_argument("--hub", help="URL of a running `vlmhub serve` (default: this machine's hub home)")
    sp.add_argument("--home", help="hub home (default: $VLMHUB_HOME)")
    sp.add_argument("--json", action="store_true", help="print the submission as JSON")
    sp.set_defaults(func=cmd_submit)

    sp = subparsers.add_parser("worker", help="check and label submitted models (run any number)")
    sp.add_argument("--name", help="worker name in leases and the audit log (default: host-pid)")
    sp.add_argument("--forever", action="store_true", help="keep polling when idle (default: exit when idle)")
    sp.add_argument("--poll", type=_positive(float), default=2.0, help="seconds between polls when idle")
    sp.add_argument("--check-seconds", type=_positive(float), default=900.0, help="time limit of one model check")
    sp.add_argument("--check-memory-gb", type=_positive(float), default=16.0, help="memory limit of one model check")
    sp.add_argument("--no-zero-shot-check", action="store_true", help="admit models that fail the zero-shot sanity check")
    sp.add_argument("--nodes-per-shard", type=_positive(int), default=64, help="graph nodes per label job")
    sp.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                    help="label shards on a Ray cluster (pip install 'vlmhub[ray]'): ADDRESS of a running one "
                         "(auto, ray://head:10001); without it $VLMHUB_RAY_ADDRESS, else a local Ray. A set "
                         "$VLMHUB_RAY_ADDRESS turns this on by itself")
    sp.add_argument("--ray-workers", type=int, metavar="N",
                    help="with Ray: shard actors (default $VLMHUB_WORKERS or 2)")
    sp.add_argument("--no-ray", action="store_true", help="label in this process even if $VLMHUB_RAY_ADDRESS is set")
    sp.add_argument("--home", help="hub home (default: $VLMHUB_HOME)")
    sp.set_defaults(func=cmd_worker)
