"""The README's AWS wiring matches what the code does: every AWS call recpipe makes is allowed by the
policy there, the notification filter is the one the worker is built for, the flags and the Lambda
handler it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## Storage events, worker fleets and Lambda") : README.index("## Developing")]
TEMPLATE = SECTION[SECTION.index("```yaml") : SECTION.index("```", SECTION.index("```yaml") + 7)]

# boto3 method → the IAM action that allows it (S3 uploads and multipart parts are s3:PutObject).
IAM_ACTION = {
    "abort_multipart_upload": "s3:AbortMultipartUpload",
    "complete_multipart_upload": "s3:PutObject",
    "create_multipart_upload": "s3:PutObject",
    "upload_part": "s3:PutObject",
    "put_object": "s3:PutObject",
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",
    "delete_object": "s3:DeleteObject",
    "list_objects_v2": "s3:ListBucket",
    "list_multipart_uploads": "s3:ListBucketMultipartUploads",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "delete_message": "sqs:DeleteMessage",
    "get_queue_attributes": "sqs:GetQueueAttributes",
    "get_queue_url": "sqs:GetQueueUrl",
    "receive_message": "sqs:ReceiveMessage",
    "send_message_batch": "sqs:SendMessage",
    "send_message": "sqs:SendMessage",
}


def aws_calls() -> set[str]:
    source = "".join((ROOT / p).read_text() for p in ("pipeline/storage/s3.py", "pipeline/fleet/sqs.py"))
    calls = set(re.findall(r"client\.([a-z_0-9]+)\(", source)) - {"get_paginator"}
    return calls | set(re.findall(r'get_paginator\("([a-z_0-9]+)"\)', source))


def test_every_aws_call_is_allowed_by_the_readme_policy():
    calls = aws_calls()
    assert calls <= set(IAM_ACTION), f"map these calls to IAM actions: {calls - set(IAM_ACTION)}"
    missing = {IAM_ACTION[c] for c in calls if IAM_ACTION[c] not in TEMPLATE}
    assert not missing


def test_deletes_are_allowed_on_leases_and_mp4s_only():
    [statement] = [s for s in TEMPLATE.split("- Effect:") if "s3:DeleteObject" in s]
    resources = re.findall(r'Arn\}/([^"]+)"', statement)
    assert resources == ["*.lease.json", "*.mp4"]


def test_notifications_are_what_the_worker_is_built_for():
    assert "Event: s3:ObjectCreated:*" in TEMPLATE
    assert "{Name: suffix, Value: .m3u8}" in TEMPLATE
    assert "deadLetterTargetArn" in TEMPLATE  # the worker finds its dead-letter queue in the redrive policy
    assert "FunctionResponseTypes: [ReportBatchItemFailures]" in TEMPLATE


def test_the_lambda_handler_named_exists():
    from pipeline.fleet import lambda_handler

    assert "pipeline.fleet.lambda_handler.handler" in SECTION
    assert callable(lambda_handler.handler)


def test_every_flag_named_exists():
    help_text = "".join(
        CliRunner().invoke(main, [c, "--help"]).output for c in ("worker", "serve", "batch", "enqueue")
    )
    named = set(re.findall(r"`(--[a-z-]+)", SECTION)) | set(re.findall(r"worker[^`\n]*?(--[a-z-]+)", SECTION))
    assert named
    assert {flag for flag in named if flag not in help_text} == set()
