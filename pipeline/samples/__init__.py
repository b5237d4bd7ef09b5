"""Synthetic recordings in Agora's names, made with ffmpeg: composite (with every defect), individual,
v2 (raw), failover and backuped. Imports only ``pipeline.model``."""
