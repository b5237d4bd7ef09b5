"""Synthetic recordings in Agora's names, made with ffmpeg: composite (with every defect), individual,
v2 (raw), failover and backuped (``make.make_sample`` writes any of them with its profile). Imports
``pipeline.model`` and ``stages.ffmpeg`` (the one module that runs ffmpeg)."""
