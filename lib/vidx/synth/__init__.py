"""Synthetic videos with known content for tests and demos (see `vidx.synth.videos`)."""

from vidx.synth.videos import (
    Scene,
    caption_for,
    index_color,
    make_sample_archive,
    make_scene,
    random_scenes,
    read_index,
    write_bad_files,
    write_index_video,
    write_vfr_video,
    write_video,
)

__all__ = [
    "Scene",
    "caption_for",
    "index_color",
    "make_sample_archive",
    "make_scene",
    "random_scenes",
    "read_index",
    "write_bad_files",
    "write_index_video",
    "write_vfr_video",
    "write_video",
]
