"""Spark session set-up and the stage runners (probe, embed) that execute inside Spark tasks."""
