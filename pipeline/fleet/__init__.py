"""Running recpipe as a fleet: queue messages and storage events (``triggers``), the SQS worker, the
job runner for it and ``batch``, the Lambda handler and the notification server. Above ``pipeline.run``."""
