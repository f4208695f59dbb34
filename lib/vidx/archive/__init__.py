"""Archive listing, fingerprints and work units."""

from vidx.archive.listing import VideoFile, list_archive, video_id_for
from vidx.archive.units import WorkUnit, balance_units, plan_units

__all__ = ["VideoFile", "WorkUnit", "balance_units", "list_archive", "plan_units", "video_id_for"]
