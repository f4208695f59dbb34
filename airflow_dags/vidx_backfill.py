"""vidx backfill: embed many archive prefixes (or one prefix per day of a date range), then
validate, build, publish and smoke-search like the nightly DAG.

    settings -> plan -> embed[prefix 1..n] (mapped, pool vidx_gpu) -> validate -> build_index
             -> publish -> smoke_search

Manual trigger only, with params: `archive_prefixes` (a list of URIs) and/or `date_from`,
`date_to` and `prefix_template` (strftime, e.g. "s3://bucket/archive/%Y/%m/%d"); `model`,
`pretrained`; `max_work_units` (the most prefixes one trigger may map: a wrong date range fails
in `plan` instead of flooding the cluster). Each prefix gets a stable vidx run id derived from
(prefix, model), so re-triggering is safe: finished prefixes commit nothing, interrupted ones
resume from their last checkpoint. Embed runs hold the warehouse lock: give the pool one slot
per warehouse (`airflow pools set vidx_gpu 1 "vidx embed jobs"`).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pendulum
from _vidx_common import (
    DEFAULT_ARGS,
    backfill_key,
    embed_args,
    embed_kwargs,
    params,
    publish_chain,
    settings,
    user_filters,
)
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param, task

TEXT = ["null", "string"]


def expand_prefixes(p: dict[str, Any]) -> list[str]:
    """The run's prefixes: the explicit list, then one per day of [date_from, date_to]; no duplicates."""
    prefixes = [str(x) for x in p.get("archive_prefixes") or []]
    if p.get("date_from") or p.get("date_to"):
        if not (p.get("date_from") and p.get("date_to") and p.get("prefix_template")):
            raise ValueError("a date range needs date_from, date_to and prefix_template")
        day, last = date.fromisoformat(p["date_from"]), date.fromisoformat(p["date_to"])
        if last < day:
            raise ValueError(f"date_to {last} is before date_from {day}")
        while day <= last:
            prefixes.append(day.strftime(p["prefix_template"]))
            day += timedelta(days=1)
    return list(dict.fromkeys(prefixes))


@task
def plan(cfg: dict[str, Any], **context: Any) -> list[list[str]]:
    """spark-submit arguments of each prefix's embed run (one mapped task each)."""
    p = context["params"]
    prefixes = expand_prefixes(p)
    if not prefixes:
        raise ValueError("nothing to backfill: pass archive_prefixes, or date_from + date_to + prefix_template")
    if len(prefixes) > int(p["max_work_units"]):
        raise ValueError(f"{len(prefixes)} prefixes exceed max_work_units={p['max_work_units']}; raise it or "
                         "split the range into several triggers")
    return [embed_args(prefix, cfg, backfill_key(prefix, cfg)) for prefix in prefixes]


with DAG(
    dag_id="vidx_backfill",
    description="embed archive prefixes in parallel (pool-limited) -> validate -> build -> publish",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=params(
        archive_prefixes=Param([], type="array", items={"type": "string"},
                               description="archive URIs to embed, one mapped task each"),
        date_from=Param(None, type=TEXT, description="first day (YYYY-MM-DD) of a date range"),
        date_to=Param(None, type=TEXT, description="last day (YYYY-MM-DD), inclusive"),
        prefix_template=Param(None, type=TEXT, description="strftime template of a day's prefix"),
        max_work_units=Param(64, type="integer", minimum=1, description="most prefixes one trigger may map"),
    ),
    user_defined_filters=user_filters(),
    doc_md=__doc__,
    tags=["vidx"],
) as dag:
    cfg = settings()
    embeds = SparkSubmitOperator.partial(**embed_kwargs(cfg)).expand(application_args=plan(cfg))
    first, _ = publish_chain(cfg)
    embeds >> first
