"""A fleet's settings are built one way: from flags (worker, serve, batch, enqueue) or from the
Lambda's environment, through the same two functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.fleet.settings import job_defaults, settings_from_environ, worker_settings
from pipeline.fleet.triggers import JobOptions
from pipeline.model.exceptions import ConfigError

SAMPLE_PROFILE = Path(__file__).resolve().parents[3] / "sample_data" / "start_request.json"


def profile_with_keys(tmp_path: Path) -> Path:
    doc = json.loads(SAMPLE_PROFILE.read_text())
    doc["clientRequest"]["storageConfig"] |= {"accessKey": "AKIAEXAMPLE", "secretKey": "very-secret"}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    return path


def test_job_defaults_carry_the_flags_and_the_profile(tmp_path):
    path = profile_with_keys(tmp_path)
    options = job_defaults(
        profile=path, dest="s3://out/", policy="lenient", av_file_type="hls,mp4", force=True
    )
    assert (options.dest, options.policy, options.av_file_type, options.force) == (
        "s3://out/",
        "lenient",
        "hls,mp4",
        True,
    )
    assert options.profile is not None
    assert options.profile["clientRequest"]["storageConfig"]["secretKey"] == "very-secret"  # stays here


def test_a_profile_sent_in_a_message_goes_without_its_credentials(tmp_path):
    options = job_defaults(profile=profile_with_keys(tmp_path), embed_profile=True)
    assert options.profile is not None
    storage = options.profile["clientRequest"]["storageConfig"]
    assert "secretKey" not in storage
    assert "accessKey" not in storage
    assert "very-secret" not in json.dumps(options.profile)


def test_a_bad_profile_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        job_defaults(profile=bad)
    assert job_defaults() == JobOptions()


def test_worker_settings_take_tuning_and_drop_empty_bucket_names():
    settings = worker_settings(
        defaults=JobOptions(dest="d"), buckets=["a", "", "b"], concurrency=4, idle_exit_s=2.5
    )
    assert settings.buckets == frozenset({"a", "b"})
    assert (settings.concurrency, settings.idle_exit_s, settings.defaults.dest) == (4, 2.5, "d")
    assert settings.visibility_s == 300  # the default where nothing is said


def test_the_lambdas_settings_come_from_its_environment():
    settings = settings_from_environ(
        {
            "RECPIPE_BUCKETS": "rec-a,rec-b",
            "RECPIPE_RECORDINGS": "s3://rec-a/agora/",
            "RECPIPE_DEST": "s3://out/",
            "RECPIPE_POLICY": "lenient",
            "RECPIPE_AV_FILE_TYPE": "hls,mp4",
            "RECPIPE_PROFILE": str(SAMPLE_PROFILE),
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        }
    )
    assert settings.buckets == frozenset({"rec-a", "rec-b"})
    assert settings.recordings == "s3://rec-a/agora/"
    assert settings.endpoint_url == "http://127.0.0.1:9"
    assert (settings.defaults.dest, settings.defaults.policy, settings.defaults.av_file_type) == (
        "s3://out/",
        "lenient",
        "hls,mp4",
    )
    assert settings.defaults.profile == json.loads(SAMPLE_PROFILE.read_text())


def test_an_unknown_policy_in_the_environment_is_ignored():
    settings = settings_from_environ({"RECPIPE_POLICY": "sloppy"})
    assert settings.defaults.policy is None
    assert settings.buckets == frozenset()
    assert settings.endpoint_url is None
