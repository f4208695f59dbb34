"""Deployment commands of the `vidx` CLI: `plan` (capacity model) and `k8s` (render overlays, size
query servers from the index manifest). Registered by vidx.cli."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vidx.config import VidxConfig


def add_parsers(sub: Any, common: Any) -> None:
    p = sub.add_parser("plan", help="capacity plan: GPU-hours, storage, index RAM, query replicas for an archive")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--archive-hours", type=float, help="hours of video in the archive")
    size.add_argument("--archive-bytes", help="archive size, e.g. 1PB, 250TB, 1PiB (with --avg-bitrate)")
    p.add_argument("--avg-bitrate", default="5Mbps", help="average video bitrate with --archive-bytes (default 5Mbps)")
    p.add_argument("--sample-fps", type=float, default=1.0, help="frames encoded per second of video (default 1)")
    p.add_argument("--clip-seconds", type=float, default=4.0, help="clip window (default 4)")
    p.add_argument("--model", default="ViT-B-32", help="encoder (default ViT-B-32)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs embedding in parallel (default 8)")
    p.add_argument("--gpu-kind", default="a100", help="GPU model for the per-frame cost (default a100)")
    p.add_argument("--cpus-per-gpu", type=int, default=16, help="executor cores decoding for each GPU (default 16)")
    p.add_argument("--nprobe", type=int, default=64, help="IVF lists searched per query (default 64)")
    p.add_argument("--target-qps", type=float, default=100.0, help="search queries per second to serve (default 100)")
    p.add_argument("--p99-ms", type=float, default=200.0, help="p99 latency target of one search (default 200)")
    p.add_argument("--replica-cores", type=int, default=8, help="CPU cores per query replica (default 8)")
    p.add_argument("--results", help="bench results folder (default: the package's bench/results)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    p = sub.add_parser("k8s", help="Kubernetes: render an overlay, size query servers from the index manifest")
    ops = p.add_subparsers(dest="k8s_command", required=True)
    op = ops.add_parser("render", help="print the manifests of a kustomize overlay (no kubectl needed)")
    op.add_argument("overlay", help="overlay folder, e.g. infra/k8s/overlays/prod")
    op.add_argument("-v", "--verbose", action="store_true")
    op = ops.add_parser("query-resources", help="write the query Deployment's resources patch from the "
                                                "published index manifest (memory_bytes)")
    common(op, model=False)
    op.add_argument("--out", required=True,
                    help="patch file to write, e.g. infra/k8s/overlays/prod/query-resources.yaml")
    op.add_argument("--model-id", help="which model's index (default: the only one)")
    op.add_argument("--version", help="index version (default: CURRENT)")
    op.add_argument("--cpu", default="1", help="CPU request per replica (default 1)")


def cmd_plan(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.capacity import PlanInput, load_costs, make_plan, print_plan

    inp = PlanInput.from_args(args)
    plan = make_plan(inp, load_costs(args.results, model=inp.model, gpu_kind=inp.gpu_kind))
    if args.json:
        sys.stdout.write(json.dumps(plan, indent=2) + "\n")
    else:
        print_plan(plan)
    return 0


def cmd_k8s(cfg: VidxConfig, args: argparse.Namespace) -> int:
    if args.k8s_command == "render":
        from vidx.deploy.kustomize import render_yaml

        sys.stdout.write(render_yaml(args.overlay))
        return 0
    from vidx.deploy.query_resources import write_resources_patch

    patch = write_resources_patch(cfg.warehouse, args.out, model_id=args.model_id, version=args.version,
                                  cpu=args.cpu)
    res = patch["spec"]["template"]["spec"]["containers"][0]["resources"]
    print(f"wrote {args.out}: requests {res['requests']}, limits {res['limits']}")
    return 0


COMMANDS = {"plan": cmd_plan, "k8s": cmd_k8s}
