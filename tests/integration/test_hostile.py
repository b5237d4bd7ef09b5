"""Hostile input: playlists and slices built to escape, exhaust or confuse. Each is processed for real
from S3 (moto behind a recording proxy on 127.0.0.1) by ``recpipe process`` in its own process.

For every case: the documented status and exit code, no traceback, bounded time and memory, and no
request outside the recording's prefix (the proxy saw every request). ffmpeg only ever reads its
stdin (``-protocol_whitelist file,pipe``; tested in tests/stages/test_remux.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.bench.measure import tree_rss
from tests.faults import FaultPlan, FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg, pytest.mark.usefixtures("aws_environment")]

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
STEM = "665ba1974b715d7e0faf7b5a3c199acf_demo-room"
SLICES = sorted(p.name for p in (SAMPLE / "recordings").glob("*.ts"))
HEAD = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-TARGETDURATION:15\n"
TAIL = "#EXT-X-ENDLIST\n"


def playlist(*uris: str, extinf: str = "15.000000", head: str = HEAD, extra: str = "") -> str:
    return head + extra + "".join(f"#EXTINF:{extinf},\n{u}\n" for u in uris) + TAIL


def with_first(uri: str) -> str:
    return playlist(uri, *SLICES[1:])


REJECTED, FAILED, OK = ("rejected", 4), ("failed", 1), ("ok", 0)

CASES: dict[str, tuple[str | bytes, dict[str, bytes], tuple[str, int], str]] = {
    # name: (playlist, slice overrides, (status, exit code), a finding code expected)
    "parent directory": (with_first("../secret.ts"), {}, REJECTED, "UNSAFE_URI"),
    "deep traversal": (with_first("../../../../etc/passwd"), {}, REJECTED, "UNSAFE_URI"),
    "absolute path": (with_first("/etc/passwd"), {}, REJECTED, "UNSAFE_URI"),
    "file URI": (with_first("file:///etc/passwd"), {}, REJECTED, "UNSAFE_URI"),
    "link-local metadata": (
        with_first("http://169.254.169.254/latest/meta-data/iam"),
        {},
        REJECTED,
        "UNSAFE_URI",
    ),
    "other host": (with_first("https://example.com/x.ts"), {}, REJECTED, "UNSAFE_URI"),
    "other bucket": (with_first("s3://other-bucket/x.ts"), {}, REJECTED, "UNSAFE_URI"),
    "protocol-relative": (with_first("//example.com/x.ts"), {}, REJECTED, "UNSAFE_URI"),
    "subdirectory": (with_first("sub/x.ts"), {}, REJECTED, "UNSAFE_URI"),
    "backslash": (with_first("..\\secret.ts"), {}, REJECTED, "UNSAFE_URI"),
    "hidden file": (with_first(".secret.ts"), {}, REJECTED, "UNSAFE_URI"),
    "control character": (with_first("a\tb.ts"), {}, REJECTED, "UNSAFE_URI"),
    "very long name": (with_first("a" * 5000 + ".ts"), {}, REJECTED, "UNSAFE_URI"),
    "encoded traversal stays a name": (with_first("%2e%2e%2fsecret.ts"), {}, FAILED, "MISSING_SEGMENT"),
    "nested playlist": (
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nother.m3u8\n",
        {},
        REJECTED,
        "PLAYLIST_INVALID",
    ),
    "byte ranges": (playlist(*SLICES, extra="#EXT-X-BYTERANGE:100@0\n"), {}, REJECTED, "PLAYLIST_INVALID"),
    "encrypted slices": (
        playlist(*SLICES, extra='#EXT-X-KEY:METHOD=AES-128,URI="http://169.254.169.254/key"\n'),
        {},
        REJECTED,
        "PLAYLIST_INVALID",
    ),
    "init section": (
        playlist(*SLICES, extra='#EXT-X-MAP:URI="init.mp4"\n'),
        {},
        REJECTED,
        "PLAYLIST_INVALID",
    ),
    "10 MB playlist": (
        playlist(*SLICES, extra="#" + "x" * (10 * 1024 * 1024) + "\n"),
        {},
        REJECTED,
        "PLAYLIST_INVALID",
    ),
    "100 000 entries": (
        playlist(*(SLICES[0] for _ in range(100_000)), extinf="1"),
        {},
        REJECTED,
        "PLAYLIST_INVALID",
    ),
    "negative EXTINF": (playlist(*SLICES, extinf="-15"), {}, REJECTED, "PLAYLIST_INVALID"),
    "NaN EXTINF": (playlist(*SLICES, extinf="nan"), {}, REJECTED, "PLAYLIST_INVALID"),
    "infinite EXTINF": (playlist(*SLICES, extinf="inf"), {}, REJECTED, "PLAYLIST_INVALID"),
    "huge EXTINF": (playlist(*SLICES, extinf="1e308"), {}, REJECTED, "PLAYLIST_INVALID"),
    "huge media sequence": (
        playlist(*SLICES, head=HEAD.replace("SEQUENCE:0", "SEQUENCE:" + "9" * 40)),
        {},
        REJECTED,
        "PLAYLIST_INVALID",
    ),
    "not UTF-8": (playlist(*SLICES).encode() + b"\xff\xfe\n", {}, REJECTED, "PLAYLIST_INVALID"),
    "NUL byte": (
        playlist(*SLICES).replace("#EXT-X-VERSION", "#EXT-X-VER\x00SION"),
        {},
        REJECTED,
        "PLAYLIST_INVALID",
    ),
    "no header": (playlist(*SLICES).removeprefix("#EXTM3U\n"), {}, REJECTED, "PLAYLIST_INVALID"),
    "URIs without EXTINF": (HEAD + "\n".join(SLICES) + "\n" + TAIL, {}, REJECTED, "PLAYLIST_INVALID"),
    "binary garbage playlist": (bytes(range(256)) * 64, {}, REJECTED, "PLAYLIST_INVALID"),
    "garbage slice": (playlist(*SLICES), {SLICES[1]: bytes(range(256)) * 400}, FAILED, "CORRUPT_SEGMENT"),
    "slice that is the playlist": (with_first(f"{STEM}.m3u8"), {}, FAILED, "CORRUPT_SEGMENT"),
    "empty slice": (playlist(*SLICES), {SLICES[2]: b""}, FAILED, "EMPTY_SEGMENT"),
    "truncated slice": (playlist(*SLICES), {SLICES[0]: b"\x47" + bytes(100)}, FAILED, "CORRUPT_SEGMENT"),
    "unicode name": (with_first("ünïcødé-😀.ts"), {}, FAILED, "MISSING_SEGMENT"),
    "vendor tags everywhere": (playlist(*SLICES, extra="#EXT-X-AGORA-TRACK-EVENT:x=1\n" * 1000), {}, OK, ""),
    "no entries at all": (HEAD + TAIL, {}, FAILED, "NO_MEDIA"),
    "every slice corrupt": (
        playlist(*SLICES),
        {name: bytes(range(256)) * 4 for name in SLICES},
        FAILED,
        "NO_MEDIA",
    ),
    "one slice listed 5000 times": (
        playlist(*(SLICES[0] for _ in range(5000)), *SLICES[1:], extinf="15.000000"),
        {},
        OK,
        "DUPLICATE_SEGMENT",
    ),
}
READ_ONCE = {"one slice listed 5000 times": SLICES[0]}
"""Cases whose playlist repeats a slice: it is read from storage once, however often it is listed."""


@pytest.fixture(scope="module")
def proxied(s3_server):
    plan = FaultPlan(rate=0.0)
    with FaultProxy(s3_server, plan) as proxy:
        yield proxy, plan


@pytest.mark.parametrize("case", CASES)
def test_hostile_input(case, s3_bucket, proxied, tmp_path):
    text, slices, (status, code), finding = CASES[case]
    client, bucket = s3_bucket.client, s3_bucket.name
    for name in SLICES:
        client.put_object(
            Bucket=bucket,
            Key=f"rec/{name}",
            Body=slices.get(name, (SAMPLE / "recordings" / name).read_bytes()),
        )
    client.put_object(Bucket=bucket, Key="secret.ts", Body=b"must never be read")
    client.put_object(
        Bucket=bucket, Key=f"rec/{STEM}.m3u8", Body=text if isinstance(text, bytes) else text.encode()
    )
    proxy, plan = proxied
    plan.requests.clear()
    out = tmp_path / "out.json"
    profile = str(SAMPLE / "start_request.json")
    argv = [sys.executable, "-m", "pipeline", "process", f"s3://{bucket}/rec/{STEM}.m3u8",
            "--endpoint-url", proxy.url, "--profile", profile, "--json"]  # fmt: skip
    measured = run_allowing_failure(argv, stdout=out)
    report = json.loads(out.read_text())
    assert (report["status"], measured.returncode) == (status, code), report.get("findings")
    if finding:
        assert finding in {f["code"] for f in report["findings"]}
    assert measured.seconds < 30
    assert measured.peak_rss < 400 * 1024 * 1024
    assert "Traceback" not in measured.stderr
    outside = [(m, p) for m, p in plan.requests if not inside(p, bucket)]
    assert outside == []
    if case in READ_ONCE:
        reads = [
            p for m, p in plan.requests if m == "GET" and p.startswith(f"/{bucket}/rec/{READ_ONCE[case]}")
        ]
        assert len(reads) == 1


def inside(path: str, bucket: str) -> bool:
    """Whether a request path stays in the recording's prefix ``rec/`` of ``bucket``."""
    if path.startswith(f"/{bucket}/rec/"):
        return True
    base, _, query = path.partition("?")
    return base in (f"/{bucket}", f"/{bucket}/") and "prefix=rec%2F" in query


class Measured:
    def __init__(self, seconds: float, peak_rss: int, returncode: int, stderr: str) -> None:
        self.seconds, self.peak_rss, self.returncode, self.stderr = seconds, peak_rss, returncode, stderr


def run_allowing_failure(argv: list[str], *, stdout: Path) -> Measured:
    """Run, sampling the process tree's memory like the benchmark does; a non-zero exit is expected."""
    started = time.perf_counter()
    with stdout.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
        peak, done = 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(proc.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, err = proc.communicate(timeout=60)
    done.set()
    sampler.join()
    return Measured(
        time.perf_counter() - started, peak, proc.returncode, unquote(err.decode("utf-8", "replace"))
    )


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30


def run_cli(*args: str) -> tuple[int, str, str]:
    """``recpipe`` in its own process (a traceback would show on its stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=120, check=False
    )
    return done.returncode, done.stdout, done.stderr


def test_hidden_files_beside_a_recording_are_ignored(tmp_path):
    import shutil

    root = tmp_path / "bucket"
    shutil.copytree(SAMPLE, root)
    recordings = root / "recordings"
    (recordings / f".{SLICES[0]}").write_bytes((recordings / SLICES[0]).read_bytes())  # a stray dot file
    (recordings / f"._{STEM}.m3u8").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # what macOS copies leave
    (recordings / f"._{SLICES[1]}").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    code, out, err = run_cli("-v", "verify", str(root), "--json")
    assert code == 0, err
    assert json.loads(out)["recording"]["sid"] == STEM.partition("_")[0]
    assert "a hidden name is never a recording's file" in err


def test_a_very_deep_directory_is_listed_without_a_traceback(tmp_path):
    import shutil

    from tests.pipeline.storage.test_local import deep_tree

    root = tmp_path / "bucket"
    shutil.copytree(SAMPLE, root)
    with deep_tree(root / "recordings" / "z", 1100):
        code, out, err = run_cli("ls", str(root), "--json")
    assert "Traceback" not in err
    assert code == 0, err
    assert [r["cname"] for r in json.loads(out)] == ["demo-room"]
