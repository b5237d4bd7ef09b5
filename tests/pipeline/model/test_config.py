from pathlib import Path

import pytest

from pipeline.model.config import PipelineConfig, check_template, load_config
from pipeline.model.exceptions import ConfigError
from pipeline.model.job import BACKUPED_NOW
from pipeline.run.app import backup_wait


def test_defaults():
    config = load_config(environ={})
    assert config == PipelineConfig()
    assert config.policy == "strict"
    assert config.fetch_workers == 8


def test_environment_then_overrides():
    environ = {"RECPIPE_FETCH_WORKERS": "4", "RECPIPE_POLICY": "lenient", "RECPIPE_WORKDIR": "/tmp/x"}
    config = load_config(environ=environ, overrides={"fetch_workers": 2, "policy": None})
    assert (config.fetch_workers, config.policy, config.workdir) == (2, "lenient", Path("/tmp/x"))


@pytest.mark.parametrize(
    ("environ", "overrides", "message"),
    [
        pytest.param({"RECPIPE_FETCH_WORKERS": "many"}, {}, "RECPIPE_FETCH_WORKERS", id="not-int"),
        pytest.param({}, {"fetch_workers": 0}, "fetch_workers", id="zero-workers"),
        pytest.param({}, {"fetch_workers": 32}, "fetch_window", id="window-below-workers"),
        pytest.param({"RECPIPE_POLICY": "loose"}, {}, "policy", id="bad-policy"),
        pytest.param({"RECPIPE_FETCH_HEAD_START": "-1"}, {}, "fetch_head_start", id="negative-head-start"),
        pytest.param({}, {"fetch_head_start_after_s": -1.0}, "fetch_head_start_after_s", id="negative-quiet"),
        pytest.param({}, {"colour": "red"}, "unknown setting", id="unknown"),
    ],
)
def test_bad_settings(environ, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ=environ, overrides=overrides)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param("{sid}_{cname}.mp4", "index", id="no-index"),
        pytest.param("{sid}_{room}_{index}.mp4", "unknown field", id="unknown-field"),
        pytest.param("out/{sid}_{index}.mp4", "plain file name", id="path"),
        pytest.param("{sid}_{index}.mkv", "plain file name", id="extension"),
        pytest.param("{sid_{index}.mp4", "mp4_template", id="malformed"),
    ],
)
def test_bad_templates(template, message):
    with pytest.raises(ConfigError, match=message):
        check_template(template, name="mp4_template")


@pytest.mark.parametrize(
    ("backuped_at", "now", "waiting"),
    [
        pytest.param(None, 1000.0, False, id="not-backuped"),
        pytest.param(BACKUPED_NOW, 1e12, True, id="backuped-with-no-time"),
        pytest.param(1000.0, 1000.0 + 3599, True, id="within-the-wait"),
        pytest.param(1000.0, 1000.0 + 3600, False, id="wait-ran-out"),
    ],
)
def test_backup_wait(backuped_at, now, waiting):
    assert backup_wait(backuped_at, now=now, wait_s=3600.0) is waiting
