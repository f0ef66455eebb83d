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


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_resumed_capture_manifest_describes_the_files_on_disk(tmp_path: Path) -> None:
    """An attempt died after some files and before the manifest; the next one seals what is stored."""
    bundle = tmp_path / "inc-1"
    (bundle / "logs").mkdir(parents=True)
    (bundle / "alert.json").write_bytes(b'{"from": "the attempt that died"}')
    (bundle / "alert.json").chmod(0o444)
    (bundle / "snapshot.bin").write_bytes(b"\x00state gathered only by the first attempt")
    FileEvidenceSink(tmp_path).write("inc-1", FILES)
    listed = json.loads((bundle / "manifest.json").read_text())["files"]
    on_disk = {p.relative_to(bundle).as_posix(): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    del on_disk["manifest.json"]
    assert set(listed) == set(on_disk) == {*FILES, "snapshot.bin"}
    for name, data in on_disk.items():
        assert listed[name] == {"sha256": _sha256(data), "bytes": len(data)}, name
    assert on_disk["alert.json"] == FILES["alert.json"]  # rewritten by the capture that sealed the bundle


def test_file_sink_leaves_no_half_written_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (disk full at fsync) leaves neither the file nor its temporary copy."""
    import errno
    import os

    def disk_full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        FileEvidenceSink(tmp_path).write("inc-1", FILES)
    monkeypatch.undo()
    leftovers = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []  # no alert.json, no temporary name, no manifest: the next attempt starts clean
    FileEvidenceSink(tmp_path).write("inc-1", FILES)
    assert json.loads((tmp_path / "inc-1/manifest.json").read_text())["files"].keys() == FILES.keys()


def test_file_sink_copies_file_backed_content(tmp_path: Path) -> None:
    spooled = tmp_path / "spool.bin"
    data = bytes(range(256)) * (12 * 1024)  # 3 MiB, more than one copy chunk
    spooled.write_bytes(data)
    FileEvidenceSink(tmp_path / "evidence").write("inc-1", {"snapshot.bin": spooled})
    bundle = tmp_path / "evidence/inc-1"
    assert (bundle / "snapshot.bin").read_bytes() == data
    listed = json.loads((bundle / "manifest.json").read_text())["files"]
    assert listed == {"snapshot.bin": {"sha256": _sha256(data), "bytes": len(data)}}


def test_the_manifest_name_is_the_sinks(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="manifest"):
        FileEvidenceSink(tmp_path).write("inc-1", {"manifest.json": b"{}"})


def _bucket(client: object, prefix: str, locked: bool) -> str:
    bucket = f"{prefix}-{time.time_ns()}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=locked)  # type: ignore[attr-defined]
    return bucket


@pytest.mark.network
@pytest.mark.parametrize(("mode", "bypass_deletes"), [("GOVERNANCE", True), ("COMPLIANCE", False)])
def test_s3_object_lock_mode_is_configurable(moto_url: str, mode: str, bypass_deletes: bool) -> None:
    client = _client(moto_url)
    bucket = _bucket(client, "lock", locked=True)
    sink = evidence_sink_for(f"s3://{bucket}/rollbackbot", lock_mode=mode)  # type: ignore[arg-type]
    assert isinstance(sink, S3EvidenceSink)
    sink._client = client
    sink.write("inc-1", FILES)
    head = client.head_object(Bucket=bucket, Key="rollbackbot/inc-1/alert.json")
    assert head["ObjectLockMode"] == mode
    # GOVERNANCE yields to s3:BypassGovernanceRetention (as the docstring says); COMPLIANCE to nobody.
    delete = {"Bucket": bucket, "Key": "rollbackbot/inc-1/alert.json", "VersionId": head["VersionId"]}
    if bypass_deletes:
        client.delete_object(**delete, BypassGovernanceRetention=True)
    else:
        with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
            client.delete_object(**delete, BypassGovernanceRetention=True)


def test_object_lock_mode_is_checked() -> None:
    with pytest.raises(ConfigError, match="OBJECT_LOCK_MODE"):
        S3EvidenceSink("bucket", "x", client=object(), lock_mode="LEGAL_HOLD")  # type: ignore[arg-type]


def _write_only(client: object) -> None:
    """What a role with s3:PutObject only meets: 403 on reads. moto_server does not enforce IAM on
    HeadObject, so the denial is raised where botocore raises it, before the request is sent."""
    from botocore.exceptions import ClientError

    def deny(model: object, **_kwargs: object) -> None:
        operation = getattr(model, "name", "")
        raise ClientError({"Error": {"Code": "403" if operation == "HeadObject" else "AccessDenied"}}, operation)

    events = client.meta.events  # type: ignore[attr-defined]
    events.register("before-call.s3.HeadObject", deny)
    events.register("before-call.s3.GetObjectLockConfiguration", deny)


@pytest.mark.network
@pytest.mark.parametrize("locked", [True, False])
def test_s3_write_only_role_still_writes_the_bundle(moto_url: str, locked: bool) -> None:
    reader = _client(moto_url)
    bucket = _bucket(reader, "writeonly", locked=locked)
    writer = _client(moto_url)
    _write_only(writer)
    url = S3EvidenceSink(bucket, "rb", client=writer).write("inc-9", FILES)
    assert url == f"s3://{bucket}/rb/inc-9/"
    body = reader.get_object(Bucket=bucket, Key="rb/inc-9/manifest.json")["Body"].read()
    assert body == manifest(FILES)
    head = reader.head_object(Bucket=bucket, Key="rb/inc-9/alert.json")
    # Not allowed to ask about Object Lock: it tried with the lock, and fell back only where refused.
    assert head.get("ObjectLockMode") == ("GOVERNANCE" if locked else None)


@pytest.mark.network
def test_s3_manifest_matches_the_stored_objects_after_a_resume(moto_url: str, tmp_path: Path) -> None:
    client = _client(moto_url)
    bucket = _bucket(client, "resume", locked=False)
    client.put_object(Bucket=bucket, Key="inc-4/alert.json", Body=b"from the attempt that died")
    snapshot = tmp_path / "snapshot.bin"
    snapshot.write_bytes(b"\x01" * (3 << 20))
    S3EvidenceSink(bucket, "", client=client).write("inc-4", {**FILES, "snapshot.bin": snapshot})
    listed = json.loads(client.get_object(Bucket=bucket, Key="inc-4/manifest.json")["Body"].read())["files"]
    assert set(listed) == {*FILES, "snapshot.bin"}
    for name, entry in listed.items():
        stored = client.get_object(Bucket=bucket, Key=f"inc-4/{name}")["Body"].read()
        assert entry == {"sha256": _sha256(stored), "bytes": len(stored)}, name


def test_object_lock_mode_setting(tmp_path: Path) -> None:
    from rollbackbot.settings import load_settings

    required = {
        "git_url": "file:///srv/gitops.git",
        "git_allowed_signers": tmp_path / "allowed_signers",
        "argocd_url": "https://argocd.example",
        "argocd_token": "argocd-token",
        "webhook_token": "webhook-token-0123456789",
    }
    assert load_settings(**required).evidence_object_lock_mode == "GOVERNANCE"
    assert load_settings(**required, evidence_object_lock_mode="compliance").evidence_object_lock_mode == "COMPLIANCE"
    with pytest.raises(ConfigError, match="ROLLBACKBOT_EVIDENCE_OBJECT_LOCK_MODE is invalid"):
        load_settings(**required, evidence_object_lock_mode="LEGAL_HOLD")


def test_file_sink_makes_every_file_durable_before_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file and each directory holding one is flushed before the manifest (the seal) is written.

    One flush per directory, not per file: the bundle's renames all become durable at once.
    """
    import os

    flushed: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        flushed.append(f"renamed {Path(dst).relative_to(tmp_path)}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    FileEvidenceSink(tmp_path).write("inc-1", {"alert.json": b"{}", "logs/pod-a.log": b"a", "logs/pod-b.log": b"b"})
    seal = flushed.index("renamed inc-1/manifest.json")
    before = flushed[:seal]
    for name in ("alert.json", "logs/pod-a.log", "logs/pod-b.log"):
        assert f"renamed inc-1/{name}" in before
    directories = [entry for entry in before if not entry.startswith("renamed") and Path(entry).is_dir()]
    assert sorted(directories) == sorted({str(tmp_path), str(tmp_path / "inc-1"), str(tmp_path / "inc-1/logs")})
    last_rename = max(i for i, entry in enumerate(before) if entry.startswith("renamed"))
    assert all(before.index(d) > last_rename for d in directories)  # flushed after the renames they hold
