"""``python -m pipeline``: the ``recpipe`` command (how workers and ``batch`` start their jobs)."""

from pipeline.cli import run_main

run_main()
