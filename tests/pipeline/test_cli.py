"""The click CLI: help texts, usage errors, ``ls`` and ``sample`` (the process verbs are in integration/)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import STATUS_EXIT, main
from pipeline.samples.composite import DEFECTS, write_sample

COMMANDS = ("process", "verify", "ls", "sample")


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def two_recordings(tmp_path: Path, ffmpeg_exe: str) -> tuple[Path, dict[str, str]]:
    """A prefix holding a finished recording and one still in progress; returns it and {cname: sid}."""
    prefix = tmp_path / "bucket" / "recordings"
    prefix.mkdir(parents=True)
    sids = {}
    for cname, defect in (("finished", None), ("live", "no-endlist")):
        made = write_sample(
            tmp_path / cname, ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, cname=cname, defect=defect
        )
        for path in made.directory.iterdir():
            shutil.copy2(path, prefix / path.name)
        sids[cname] = made.sid
    return prefix.parent, sids


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage: recpipe " + command in result.output
    assert "--help" in result.output


def test_top_level_help_lists_commands_and_exit_codes():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
    for status, code in STATUS_EXIT.items():
        assert f"{code} {status}" in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.startswith("recpipe, version ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("process", "/no/such/place"), "/no/such/place: does not exist", id="missing-location"),
        pytest.param(("process", "s3://"), "s3://: no bucket", id="s3-without-bucket"),
        pytest.param(
            ("process", "ftp://host/x"),
            "ftp://host/x: unsupported location scheme ftp://",
            id="unsupported-scheme",
        ),
        pytest.param(("ls", "/no/such/place"), "/no/such/place: does not exist", id="ls-missing-location"),
    ],
)
def test_bad_locations_are_usage_errors(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {message}")


def test_no_location_and_no_profile_is_a_usage_error():
    result = invoke("process")
    assert result.exit_code == 2
    assert "LOCATION" in result.output or "--profile" in result.output


def test_profile_with_an_ill_typed_field_names_the_field(tmp_path, two_recordings):
    root, _ = two_recordings
    profile = tmp_path / "start.json"
    profile.write_text(json.dumps({"clientRequest": {"recordingFileConfig": {"avFileType": "mp4"}}}))
    result = invoke("verify", str(root), "--profile", str(profile))
    assert result.exit_code == 2
    assert "recordingFileConfig.avFileType" in result.output


def test_errors_as_json_are_one_document(tmp_path):
    result = invoke("verify", str(tmp_path / "absent"), "--json")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["exit_code"] == 2
    assert document["error"]["type"] == "ConfigError"
    assert "absent" in document["error"]["message"]


@pytest.mark.ffmpeg
def test_several_recordings_need_a_sid(two_recordings):
    root, sids = two_recordings
    result = invoke("verify", str(root))
    assert result.exit_code == 2
    assert "--sid" in result.output
    for sid in sids.values():
        assert sid in result.output
    chosen = invoke("verify", str(root), "--sid", sids["finished"], "--json")
    assert chosen.exit_code == 0, chosen.output
    assert json.loads(chosen.stdout)["recording"]["cname"] == "finished"
    live = invoke("verify", str(root), "--sid", sids["live"], "--json")
    assert live.exit_code == STATUS_EXIT["pending"]


@pytest.mark.ffmpeg
def test_unknown_sid_fails_naming_it(two_recordings):
    root, _ = two_recordings
    result = invoke("verify", str(root), "--sid", "0123456789abcdef")
    assert result.exit_code == 1
    assert "0123456789abcdef" in result.output


@pytest.mark.ffmpeg
def test_ls_shows_each_recording_state(two_recordings, tmp_path):
    root, sids = two_recordings
    listed = {item["sid"]: item for item in json.loads(invoke("ls", str(root), "--json").stdout)}
    assert listed[sids["finished"]]["state"] == "complete"
    assert listed[sids["live"]]["state"] == "in-progress"
    assert listed[sids["finished"]]["slices"] == 2
    assert listed[sids["finished"]]["duration_s"] == pytest.approx(4.0, abs=0.1)

    out = tmp_path / "out"
    done = invoke(
        "process", str(root), "--sid", sids["finished"], "--dest", str(out), "--av-file-type", "hls,mp4"
    )
    assert done.exit_code == 0, done.output
    relisted = {
        item["sid"]: item for item in json.loads(invoke("ls", str(root), "--dest", str(out), "--json").stdout)
    }
    assert relisted[sids["finished"]]["state"] == "processed"

    table = invoke("ls", str(root), "--dest", str(out)).output.splitlines()
    assert len(table) == 2
    assert any(line.startswith("processed") and "finished" in line for line in table)
    assert any(line.startswith("in-progress") and "live" in line for line in table)


def test_ls_of_an_empty_location_says_so(tmp_path):
    result = invoke("ls", str(tmp_path))
    assert result.exit_code == 0
    assert "no recordings" in result.output


@pytest.mark.ffmpeg
def test_sample_writes_a_processable_recording(tmp_path):
    result = invoke(
        "sample", str(tmp_path / "s"), "--seconds", "4", "--slice-seconds", "2", "--cname", "my room"
    )
    assert result.exit_code == 0, result.output
    profile = json.loads((tmp_path / "s" / "start_request.json").read_text())
    assert profile["cname"] == "my room"
    assert profile["clientRequest"]["recordingFileConfig"]["avFileType"] == ["hls", "mp4"]
    assert len(list((tmp_path / "s" / "recordings").glob("*.ts"))) == 2

    again = invoke("sample", str(tmp_path / "s"), "--seconds", "4", "--slice-seconds", "2")
    assert again.exit_code == 2
    assert "--force" in again.output


def test_sample_rejects_unknown_defect(tmp_path):
    result = invoke("sample", str(tmp_path), "--defect", "gremlins")
    assert result.exit_code == 2
    for name in DEFECTS:
        assert name in result.output


@pytest.mark.ffmpeg
def test_installed_command_prints_no_traceback_for_unsafe_input(tmp_path, ffmpeg_exe):
    """The real console script, in a real process: an expected failure is a message and an exit code."""
    write_sample(tmp_path / "recordings", ffmpeg=ffmpeg_exe, seconds=6, slice_seconds=2, defect="unsafe-uri")
    recpipe = Path(sys.executable).with_name("recpipe")
    assert recpipe.exists(), "recpipe must be installed in the test environment (make test does this)"
    proc = subprocess.run(
        [str(recpipe), "process", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == STATUS_EXIT["rejected"]
    assert "UNSAFE_URI" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_ls_on_a_terminal_is_an_aligned_coloured_table(tmp_path):
    import io

    from rich.console import Console

    from pipeline.cli import _ls_table
    from pipeline.model.config import load_config
    from pipeline.run.app import list_recordings

    sample = Path(__file__).resolve().parents[2] / "sample_data"
    listings = list_recordings(
        str(sample), endpoint_url=None, dest=None, environ={}, config=load_config(environ={})
    )
    out = io.StringIO()
    _ls_table(listings, console=Console(file=out, force_terminal=True, width=160))
    text = out.getvalue()
    assert "\x1b[36mcomplete" in text  # the state in its colour
    assert listings[0].recording.sid in text  # the whole sid
    header = next(line for line in text.splitlines() if "slices" in line)
    assert "state" in header
    assert "duration" in header


def test_the_command_line_loads_what_a_run_needs_only():
    """The fleet (queues, metrics), rich and boto3 are imported by the commands that use them: every
    ``recpipe process`` pays for its imports, a local one for no S3 client."""
    code = (
        "import sys, pipeline.cli; "
        "print(sorted({m.split('.')[0] if not m.startswith('pipeline.') else m for m in sys.modules}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for module in ("pipeline.fleet", "rich", "prometheus_client", "boto3", "botocore", "azure"):
        assert f"'{module}" not in loaded, f"{module} is imported with the command line"
