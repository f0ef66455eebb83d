"""Evidence sinks: a real directory, and S3 served by a local moto_server (Object Lock included)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollbackbot import procs
from rollbackbot.adapters.evidence import FileEvidenceSink, S3EvidenceSink, evidence_sink_for, manifest
from rollbackbot.errors import ConfigError, PermanentError

FILES = {"alert.json": b'{"name": "PromptInjectionSpike"}', "logs/docsum-llm-7d9c.log": b"GET /v1 200\n"}


def test_file_sink_writes_read_only_files_with_a_manifest(tmp_path: Path) -> None:
    url = FileEvidenceSink(tmp_path).write("inc-1", FILES)
    bundle = tmp_path / "inc-1"
    assert url == bundle.resolve().as_uri()
    assert (bundle / "logs/docsum-llm-7d9c.log").read_bytes() == FILES["logs/docsum-llm-7d9c.log"]
    listed = json.loads((bundle / "manifest.json").read_text())["files"]
    assert set(listed) == set(FILES)
    assert listed["alert.json"]["bytes"] == len(FILES["alert.json"])
    assert not (bundle / "alert.json").stat().st_mode & stat.S_IWUSR


def test_file_sink_is_write_once(tmp_path: Path) -> None:
    sink = FileEvidenceSink(tmp_path)
    sink.write("inc-1", FILES)
    sink.write("inc-1", {"alert.json": b"tampered"})
    assert (tmp_path / "inc-1/alert.json").read_bytes() == FILES["alert.json"]


@pytest.mark.parametrize("name", ["../escape.json", "/etc/passwd", "a/../../b", ""])
def test_file_names_cannot_escape_the_bundle(tmp_path: Path, name: str) -> None:
    with pytest.raises(PermanentError):
        FileEvidenceSink(tmp_path / "root").write("inc-1", {name: b"x"})
    assert not (tmp_path / "escape.json").exists()


def test_sink_for_url() -> None:
    assert isinstance(evidence_sink_for("file:///var/lib/rollbackbot/evidence"), FileEvidenceSink)
    s3 = evidence_sink_for("s3://forensics/rollbackbot")
    assert isinstance(s3, S3EvidenceSink) and (s3.bucket, s3.prefix) == ("forensics", "rollbackbot")
    with pytest.raises(ConfigError):
        evidence_sink_for("ftp://x/y")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    binary = shutil.which("moto_server") or str(Path(__import__("sys").executable).parent / "moto_server")
    if not Path(binary).exists():
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = procs.free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        procs.wait_ready(f"http://127.0.0.1:{port}/moto-api/", proc, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        procs.stop(proc)


def _client(url: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


@pytest.mark.network
def test_s3_sink_with_object_lock(moto_url: str) -> None:
    client = _client(moto_url)
    bucket = f"evidence-{int(time.time() * 1000)}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    sink = S3EvidenceSink(bucket, "rollbackbot", client=client)
    url = sink.write("inc-1", FILES)
    assert url == f"s3://{bucket}/rollbackbot/inc-1/"
    key = "rollbackbot/inc-1/alert.json"
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    body = client.get_object(Bucket=bucket, Key="rollbackbot/inc-1/manifest.json")["Body"].read()
    assert body == manifest(FILES)
    # Locked: the version cannot be deleted without a governance bypass.
    version = head["VersionId"]
    with pytest.raises(client.exceptions.ClientError):
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    # Write-once: a second capture for the same incident changes nothing.
    sink.write("inc-1", {"alert.json": b"tampered"})
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == FILES["alert.json"]


@pytest.mark.network
def test_s3_sink_without_object_lock_and_missing_bucket(moto_url: str) -> None:
    client = _client(moto_url)
    bucket = f"plain-{int(time.time() * 1000)}"
    client.create_bucket(Bucket=bucket)
    S3EvidenceSink(bucket, "", client=client).write("inc-2", FILES)
    assert "ObjectLockMode" not in client.head_object(Bucket=bucket, Key="inc-2/alert.json")
    with pytest.raises(PermanentError, match="refused"):
        S3EvidenceSink("no-such-bucket", "x", client=client).write("inc-3", FILES)
