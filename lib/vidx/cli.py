"""`vidx` command line: the same stages as jobs/*.py, run locally (Spark `local[*]` by default)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from vidx import cli_infra, cli_ops
from vidx.config import VidxConfig, load_config
from vidx.errors import VidxError

LOG = logging.getLogger("vidx")


def _common(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    p.add_argument("--config", help="YAML config file (default: $VIDX_CONFIG)")
    p.add_argument("--warehouse", "-w", help="warehouse root URI (tables/, indexes/); default ./warehouse")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    if model:
        p.add_argument("--model", help="open_clip model name (default vidx-tiny)")
        p.add_argument("--pretrained", help="open_clip pretrained tag, checkpoint path, or 'random'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("embed", help="decode + encode new videos of an archive into the Delta tables")
    p.add_argument("archive", help="archive root: local path or pyarrow/fsspec URI (s3://, gs://...)")
    _common(p)
    p.add_argument("--master", help="Spark master (default local[*]), e.g. spark://host:7077")
    p.add_argument("--run-id", help="run id (default: UTC time + random suffix)")
    p.add_argument("--sample-fps", type=float, help="frames sampled per second (default 1)")
    p.add_argument("--clip-seconds", type=float, help="clip window length (default 4)")
    p.add_argument("--commit-every", type=int, help="work units per checkpoint commit (default 256)")
    p.add_argument("--token-clustering", action=argparse.BooleanOptionalAction, default=None,
                   help="CenterCLIP token clustering (encode.token_clustering.enabled; settings in the config)")
    p.add_argument("--full-refresh", action="store_true", help="re-embed every file (e.g. after a model change)")
    p.add_argument("--retry-failed", action="store_true", help="retry files that failed in earlier runs")
    p = sub.add_parser("tables", help="maintain the Delta tables")
    p.add_argument("action", choices=["vacuum", "history", "optimize", "migrate"],
                   help="vacuum: delete unreferenced files; history: commits; optimize: compact + Z-order by video_id; "
                        "migrate: rewrite a clips table of an older vidx into the video_bucket layout")
    p.add_argument("--table", choices=["videos", "clips", "runs", "validations"], action="append",
                   help="table(s) to act on (default: all)")
    p.add_argument("--retention-hours", type=int, default=168, help="vacuum: keep removed files this long (168)")
    p.add_argument("--force", action="store_true", help="vacuum: allow a retention below Delta's 168 h check")
    p.add_argument("--dry-run", action="store_true", help="vacuum: list files without deleting")
    _common(p, model=False)
    p = sub.add_parser("build-index", help="build and publish a FAISS index from a pinned clips version")
    _common(p, model=False)
    p.add_argument("--model-id", help="model_id to index (default: the only one in the table)")
    p.add_argument("--version", type=int, help="clips table version to pin (default: latest)")
    p.add_argument("--master", help="Spark master for builds above index.distributed_above (default local[*])")
    p.add_argument("--force", action="store_true", help="rebuild even if the current index is up to date")
    p.add_argument("--skip-validation", action="store_true",
                   help="development only: build even if the clips version did not pass `vidx validate`")
    p.add_argument("--no-publish", action="store_true",
                   help="write the index version but leave CURRENT alone (publish with `vidx index promote`)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p = sub.add_parser("search", help="search the published index by text or image")
    p.add_argument("text", nargs="?", help="text query")
    p.add_argument("--image", help="image file to search with")
    p.add_argument("-k", type=int, help="number of results (default 10)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--moments", action="store_true",
                   help="merge adjacent clips of a video into moments (start-end spans); -k counts moments")
    p.add_argument("--model-id", help="which model's index (default: the only one)")
    _common(p, model=False)
    p.add_argument("--pretrained", help="local checkpoint for the index's model, if not at its recorded path")
    p = sub.add_parser("demo", help="generate a sample archive, embed, index and search it")
    p.add_argument("--workdir", default="./vidx-demo", help="where archive and warehouse go")
    p.add_argument("--master", help="Spark master (default local[*])")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--config", help="YAML config file")
    _model_parsers(sub)
    _serve_parsers(sub)
    cli_ops.add_parsers(sub, _common)
    cli_infra.add_parsers(sub, _common)
    return parser


def _model_parsers(sub: Any) -> None:
    """`train-tiny` and `eval`: vidx's own model and how well search finds the right clip."""
    p = sub.add_parser("train-tiny", help="train vidx-tiny on the synthetic captioned world (CPU, minutes)")
    p.add_argument("--out", required=True, help="checkpoint to write; use it with --pretrained PATH")
    p.add_argument("--seed", type=int, help="seed of the weights init and of the data (default 0)")
    p.add_argument("--steps", type=int, help="training steps (default 400: about 5 min on 2 cores)")
    p.add_argument("--batch-size", type=int, help="captioned frames per step (default 128)")
    p.add_argument("--threads", type=int, help="torch threads; the weights depend on it (default 2)")
    p.add_argument("-v", "--verbose", action="store_true")
    p = sub.add_parser("eval", help="text -> clip Recall@K of the published index against a truth file")
    _common(p, model=False)
    p.add_argument("--truth", required=True, help="truth.json of the archive (written by vidx.synth)")
    p.add_argument("--k", dest="ks", type=int, nargs="+", help="recall cut-offs (default 1 5 10)")
    p.add_argument("--model-id", help="which model's index (default: the only one)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--moments", action="store_true",
                   help="compare clips and moments: recall at temporal IoU >= 0.5 with the scenes' spans")


def _serve_parsers(sub: Any) -> None:
    p = sub.add_parser("serve", help="HTTP query server over the published index (follows CURRENT)")
    _common(p, model=False)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--model-id", help="which model's index (default: the only one)")
    p.add_argument("--pretrained", help="local checkpoint for the index's model, if not at its recorded path")
    p.add_argument("--reload-interval", type=float, help="seconds between polls of CURRENT (default 5)")
    p.add_argument("--media", action=argparse.BooleanOptionalAction, default=None,
                   help="serve indexed videos at /media/{video_id} for the search page (serve.media, default on)")
    p = sub.add_parser("index", help="published index versions: list, promote, rollback, gc")
    ops = p.add_subparsers(dest="index_command", required=True)
    for name, text in [("list", "list versions, oldest first (* = CURRENT)"),
                       ("promote", "point CURRENT at VERSION (after verifying its checksums)"),
                       ("rollback", "point CURRENT at the version published before it"),
                       ("gc", "delete old versions and stale temporary folders")]:
        op = ops.add_parser(name, help=text)
        _common(op, model=False)
        op.add_argument("--model-id", help="which model's index (default: the only one)")
        if name == "list":
            op.add_argument("--json", action="store_true", help="print versions as JSON")
        if name == "promote":
            op.add_argument("target", metavar="VERSION", help="version folder name (see `vidx index list`)")
        if name in ("promote", "rollback"):
            op.add_argument("--skip-validation", action="store_true",
                            help="development only: publish even if its clips version did not pass `vidx validate`")
        if name == "gc":
            op.add_argument("--keep", type=int, default=3, help="newest versions to keep (default 3)")
            op.add_argument("--dry-run", action="store_true", help="say what would be deleted")


def _config(args: argparse.Namespace) -> VidxConfig:
    return load_config(getattr(args, "config", None), overrides={
        "warehouse": getattr(args, "warehouse", None),
        "encode.model": getattr(args, "model", None) if args.command != "search" else None,
        "encode.pretrained": getattr(args, "pretrained", None) if args.command not in ("search", "serve") else None,
        "spark.master": getattr(args, "master", None),
        "decode.sample_fps": getattr(args, "sample_fps", None),
        "clips.seconds": getattr(args, "clip_seconds", None),
        "archive.commit_every": getattr(args, "commit_every", None),
        "encode.token_clustering.enabled": getattr(args, "token_clustering", None),
        "search.k": getattr(args, "k", None),
        "serve.host": getattr(args, "host", None),
        "serve.port": getattr(args, "port", None),
        "serve.reload_interval_s": getattr(args, "reload_interval", None),
        "serve.media": getattr(args, "media", None),
    })


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        datefmt="%H:%M:%S", handlers=[RichHandler(show_path=False, rich_tracebacks=False)])
    for noisy in ("py4j", "urllib3", "filelock", "numexpr", "root"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_embed(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.report import print_embed_report
    from vidx.spark.embed import run_embed

    report = run_embed(cfg, args.archive, run_id=args.run_id, full_refresh=args.full_refresh,
                       retry_failed=args.retry_failed)
    print_embed_report(report)
    return 0


def cmd_tables(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.tables import delta, table_uri

    names = args.table or ["videos", "clips", "runs", "validations"]
    if args.action == "optimize":
        return _optimize_tables(cfg, names)
    if args.action == "migrate":
        return _migrate_clips(cfg)
    if args.action == "vacuum" and args.retention_hours < 168 and not args.force:
        raise VidxError(f"--retention-hours {args.retention_hours} is below Delta's 168 h retention check: "
                        "readers of older versions may lose files. Add --force if no run or reader is active.")
    if args.action == "vacuum":
        return _vacuum_tables(cfg, names, args)
    for name in names:
        uri = table_uri(cfg.warehouse, name)
        if delta.table_exists(uri):
            for h in delta.history(uri):
                print(json.dumps({"table": name, **h}, default=str))
    return 0


def _vacuum_tables(cfg: VidxConfig, names: list[str], args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from vidx.tables import delta, table_uri
    from vidx.tables.lock import WarehouseLock

    # Vacuum deletes every file the log does not reference, and a running embed's written but not yet
    # committed files are such files: hold the writer lease, as optimize does, so no run is mid-checkpoint.
    with WarehouseLock(cfg.warehouse, f"vacuum-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"):
        for name in names:
            uri = table_uri(cfg.warehouse, name)
            if delta.table_exists(uri):
                files = delta.vacuum(uri, retention_hours=args.retention_hours, dry_run=args.dry_run)
                print(f"{name}: {'would delete' if args.dry_run else 'deleted'} {len(files)} files")
    return 0


def _optimize_tables(cfg: VidxConfig, names: list[str]) -> int:
    from datetime import UTC, datetime

    from vidx.tables import delta, table_uri
    from vidx.tables.lock import WarehouseLock

    # Optimize removes the files it compacts: holding the writer lease keeps it from racing an
    # embed run's checkpoint commits (which rewrite files too).
    with WarehouseLock(cfg.warehouse, f"optimize-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"):
        for name in names:
            uri = table_uri(cfg.warehouse, name)
            if delta.table_exists(uri):
                print(json.dumps({"table": name, **delta.optimize(uri)}, default=str))
    return 0


def _migrate_clips(cfg: VidxConfig) -> int:
    from datetime import UTC, datetime

    from vidx.tables import table_uri
    from vidx.tables.layout import migrate
    from vidx.tables.lock import WarehouseLock

    with WarehouseLock(cfg.warehouse, f"migrate-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"):
        version = migrate(table_uri(cfg.warehouse, "clips"))
    print(json.dumps({"table": "clips", "migrated": version is not None, "version": version}))
    return 0


def cmd_build_index(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.index.from_table import build_from_warehouse
    from vidx.report import print_build_result

    result = build_from_warehouse(cfg, model_id=args.model_id, version=args.version, force=args.force,
                                  skip_validation=args.skip_validation, set_current=not args.no_publish)
    if args.json:  # one line: Airflow passes the last line on (XCom) to `vidx index promote`
        print(json.dumps({"model_id": result.model_id, "table_version": result.table_version,
                          "up_to_date": result.up_to_date,
                          "version": result.published.version if result.published else None}))
    else:
        print_build_result(result)
    return 0


def cmd_search(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.report import print_hits
    from vidx.serve.query import Searcher

    if bool(args.text) == bool(args.image):
        raise VidxError("give exactly one query: a TEXT argument or --image PATH")
    searcher = Searcher(cfg.warehouse, model_id=args.model_id, pretrained=args.pretrained)
    k = cfg.search.k
    if args.moments:
        return _search_moments(cfg, args, searcher)
    hits = searcher.search_text(args.text, k) if args.text else searcher.search_image(args.image, k)
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=2))
    else:
        print_hits(hits, title=f"{args.text or args.image}  (index {searcher.loaded.version})")
    return 0


def _search_moments(cfg: VidxConfig, args: argparse.Namespace, searcher: Any) -> int:
    from vidx.encode.embedder import encode_image_files, encode_texts
    from vidx.report import print_moments
    from vidx.serve.moments import searcher_moments

    vec = encode_texts(searcher.model, [args.text]) if args.text else encode_image_files(searcher.model, [args.image])
    moments = searcher_moments(searcher, vec[0], cfg.search.k, modality="text" if args.text else "image",
                               cfg=cfg.search)
    if args.json:
        print(json.dumps([m.as_dict() for m in moments], indent=2))
    else:
        print_moments(moments, title=f"{args.text or args.image}  (moments, index {searcher.loaded.version})")
    return 0


def cmd_demo(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.demo import run_demo

    run_demo(args.workdir, cfg)
    return 0


def cmd_train_tiny(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.train.command import train_command

    train_command(args.out, seed=args.seed, steps=args.steps, batch_size=args.batch_size, threads=args.threads)
    return 0


def cmd_eval(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.quality.retrieval_eval import DEFAULT_KS, evaluate, print_report

    if args.moments:
        return _eval_moments(cfg, args)

    report = evaluate(cfg.warehouse, args.truth, ks=args.ks or DEFAULT_KS, model_id=args.model_id)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report)
    return 0


def _eval_moments(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.quality.moment_eval import evaluate_moments, print_moment_report

    report = evaluate_moments(cfg.warehouse, args.truth, cfg=cfg.search, model_id=args.model_id,
                              k=max(args.ks or [5]))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_moment_report(report)
    return 0


def cmd_serve(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.index.registry import resolve_model

    # Resolved before the server (and torch) is imported, so a bad warehouse fails in a second.
    model_id = resolve_model(cfg.warehouse, args.model_id, allow_none=True)
    from vidx.serve.app import run_server

    run_server(cfg, model_id=model_id, pretrained=args.pretrained)
    return 0


def cmd_index(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.index import registry
    from vidx.report import print_versions

    w, model = cfg.warehouse, args.model_id
    if args.index_command == "list":
        infos = [v.summary() for v in registry.versions(w, model)]
        if args.json:
            print(json.dumps(infos, indent=2))
        else:
            print_versions(infos, title=f"index versions of {registry.resolve_model(w, model)}")
    elif args.index_command == "promote":
        gate = cfg.index.require_validation and not args.skip_validation  # the gate build-index uses
        before = registry.promote(w, args.target, model, require_validation=gate)
        print(f"CURRENT: {before} -> {args.target}")
    elif args.index_command == "rollback":
        gate = cfg.index.require_validation and not args.skip_validation
        print("CURRENT: {} -> {}".format(*registry.rollback(w, model, require_validation=gate)))
    else:
        report = registry.gc(w, model, keep=args.keep, dry_run=args.dry_run)
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} versions: {', '.join(report.removed_versions) or 'none'}; "
              f"stale leftovers: {', '.join(report.removed_debris) or 'none'}; kept: {', '.join(report.kept)}")
    return 0


COMMANDS: dict[str, Any] = {"embed": cmd_embed, "build-index": cmd_build_index, "search": cmd_search,
                            "demo": cmd_demo, "tables": cmd_tables,
                            "train-tiny": cmd_train_tiny, "eval": cmd_eval,
                            "serve": cmd_serve, "index": cmd_index, **cli_ops.COMMANDS,
                            **cli_infra.COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        cfg = _config(args)
        return int(COMMANDS[args.command](cfg, args))
    except VidxError as exc:
        LOG.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
