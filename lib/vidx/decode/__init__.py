"""Decoding: probe videos, sample timestamps on a grid, decode frames with decord."""

from vidx.decode.decoder import DecodedFrames, decode_range, decode_reference, empty_frames
from vidx.decode.probe import VideoInfo, check_readable, probe
from vidx.decode.sampling import (
    center_crop,
    decode_size,
    frame_indices_for_times,
    rotate_frames,
    sample_times,
)
from vidx.decode.source import local_copy

__all__ = [
    "DecodedFrames",
    "VideoInfo",
    "center_crop",
    "check_readable",
    "decode_range",
    "decode_reference",
    "decode_size",
    "empty_frames",
    "frame_indices_for_times",
    "local_copy",
    "probe",
    "rotate_frames",
    "sample_times",
]
