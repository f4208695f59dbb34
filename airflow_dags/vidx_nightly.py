"""vidx nightly: embed what is new in the archive, validate the clips version, build an index from
exactly that version, publish it, smoke-search it.

    settings -> embed (spark-submit jobs/embed.py) -> validate -> build_index -> publish -> smoke_search

Daily, no catch-up (each run embeds everything new, so skipped days need no replay), one run at a
time (the embed holds the warehouse lock anyway). Embed re-tries resume the same vidx run
(`--run-id nightly-<airflow run id>`), which is exactly-once: a re-run on unchanged data commits
nothing and build_index reports "up to date" (publish is then skipped). Assets: `vidx_clips` is
updated by embed, `vidx_index` by publish; schedule downstream DAGs on Asset.ref(name="vidx_index").
See _vidx_common for where settings come from.
"""

from __future__ import annotations

import os

import pendulum
from _vidx_common import DEFAULT_ARGS, embed_kwargs, params, publish_chain, settings, user_filters
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param

with DAG(
    dag_id="vidx_nightly",
    description="embed new videos -> validate -> build index -> publish -> smoke search",
    # a cron string is a CronTriggerTimetable in Airflow 3: one run per day, at 02:00 UTC by default
    schedule=os.environ.get("VIDX_AIRFLOW_NIGHTLY_CRON", "0 2 * * *"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=params(archive=Param(None, type=["null", "string"], description="archive root to embed "
                                "(default: Variable vidx_archive, else $VIDX_AIRFLOW_ARCHIVE)")),
    user_defined_filters=user_filters(),
    doc_md=__doc__,
    tags=["vidx"],
) as dag:
    cfg = settings()
    embed = SparkSubmitOperator(**embed_kwargs(cfg), application_args=cfg["embed_args"])
    first, _ = publish_chain(cfg)
    embed >> first
