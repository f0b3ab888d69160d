"""Real syncs: the Pollinator dev Colonies server + moto S3, both over real HTTP.

Faults are injected by a proxy in front of either server, never by mocks.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import colonyserver
from cfs_fakes import s3_settings, sha, tree, write
from fault_proxy import FaultProxy, rpc_is
from pollinator.cfs import CFS
from pollinator.colonies.models import File, Reference, S3Object
from pollinator.errors import SyncError, UnsafePathError

pytestmark = pytest.mark.skipif(not colonyserver.server_available(),
                                reason="needs pollinator.dev.server (the dev Colonies server), not written yet")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = colonyserver.start(tmp_path_factory.mktemp("colonies"))
    try:
        yield srv
    finally:
        colonyserver.stop(srv)


@pytest.fixture
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture
def label() -> str:
    return f"/it/{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cfs(client, s3):
    return CFS(client, s3, workers=4)


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "empty.bin": b"", "sub/b.txt": b"beta", "sub/deeper/c.bin": os.urandom(200_000)}
    for rel, data in files.items():
        write(root / rel, data)
    return files


def test_sync_up_then_second_instance_downloads_identical(cfs, client, s3, server, tmp_path, label):
    files = make_tree(tmp_path / "a")
    plan = cfs.plan(tmp_path / "a", label, True)
    assert plan.upload_count == 4 and plan.download_count == 0
    cfs.apply(plan)
    assert cfs.plan(tmp_path / "a", label, True).is_empty
    with server.client() as c2:
        other = CFS(c2, s3, workers=2)
        plan = other.plan(tmp_path / "b", label, False)
        assert plan.download_count == 4 and plan.upload_count == 0
        other.apply(plan)
    assert tree(tmp_path / "b") == files
    assert not list((tmp_path / "b").rglob(".cfs")), "downloads hold the user's files only, no Go markers"
    with server.client() as c3:  # asked for (pollinator sync --label), the Go marker is written
        CFS(c3, s3, workers=2, markers=True).sync(tmp_path / "c", label, keep_local=False)
    assert (tmp_path / "c" / "sub" / ".cfs").read_text() == f'{{"label":"{label}/sub"}}'
    # our records carry no S3 credentials (pycolonies style)
    rec = client.get_file(label=label, name="a.txt")[0]
    assert rec.checksum == sha(b"alpha") and rec.checksumalg == "SHA256"
    obj = rec.ref.s3object
    assert (obj.accesskey, obj.secretkey) == ("", "") and obj.server == s3.host and obj.port == s3.port
    assert {lb.name for lb in client.get_file_labels(label, False)} == {label, f"{label}/sub", f"{label}/sub/deeper"}


@pytest.mark.parametrize("keep_local", [True, False])
def test_conflict_rules(cfs, client, s3, tmp_path, label, keep_local):
    write(tmp_path / "a" / "f.txt", "version A")
    write(tmp_path / "a" / "n" / "remote_only.txt", "ro")
    cfs.sync(tmp_path / "a", label, True)
    write(tmp_path / "b" / "f.txt", "version B")
    write(tmp_path / "b" / "local_only.txt", "lo")
    report = CFS(client, s3).sync(tmp_path / "b", label, keep_local)
    assert (tmp_path / "b" / "n" / "remote_only.txt").read_text() == "ro"  # fetched under both rules
    assert f"{label}/local_only.txt" in report.uploaded
    latest = client.get_file(label=label, name="f.txt")[0]
    if keep_local:
        assert (tmp_path / "b" / "f.txt").read_text() == "version B" and latest.checksum == sha(b"version B")
        assert len(client.get_file(label=label, name="f.txt", latest=False)) == 2  # a new revision
    else:
        assert (tmp_path / "b" / "f.txt").read_text() == "version A" and latest.checksum == sha(b"version A")


def test_ignore_rules(cfs, client, tmp_path, label):
    src = tmp_path / "src"
    write(src / ".pollinatorignore", "*.log\n__pycache__/\n")
    write(src / "main.py", "print(1)")
    write(src / "run.log", "noise")
    write(src / "__pycache__" / "main.pyc", "bytecode")
    cfs.sync(src, label, True)
    assert {f.name for f in client.get_files(label)} == {"main.py", ".pollinatorignore"}
    assert cfs.plan(src, label, True).is_empty


def test_no_change_resync_hashes_nothing_and_lists_each_label_once(server, s3, tmp_path, label):
    src = tmp_path / "src"
    make_tree(src)
    old = 1_600_000_000 * 10**9
    for p in src.rglob("*"):
        os.utime(p, ns=(old, old))
    with server.client() as c:
        CFS(c, s3).sync(src, label, True)
    with FaultProxy(server.endpoint) as proxy, server.client(proxy.endpoint) as c:
        fresh = CFS(c, s3)
        assert fresh.plan(src, label, True).is_empty
        assert fresh._cache(src).hashed == 0
        assert len(proxy.requests) == 1 + 3  # getfilelabelsmsg + one getfilesmsg per label


@pytest.mark.parametrize("label_suffix,name", [("", "../escape.txt"), ("/..", "x.txt"), ("", "C:evil"),
                                               ("", "a\\b"), ("/sub/../..", "y")])
def test_hostile_records_refused(cfs, client, tmp_path, label, label_suffix, name):
    write(tmp_path / "seed" / "ok.txt", "ok")
    cfs.sync(tmp_path / "seed", label, True)
    hostile = File(colonyname="dev", label=label + label_suffix, name=name, size=1, checksum=sha(b"x"),
                   checksumalg="SHA256", ref=Reference(protocol="s3", s3object=S3Object(object="0" * 64)))
    client.add_file(hostile)
    target = tmp_path / "target"
    for op in (lambda: cfs.sync(target, label, False), lambda: cfs.pull(label, target),
               lambda: cfs.download_snapshot(cfs.create_snapshot(label).snapshotid, target)):
        with pytest.raises(UnsafePathError, match="refusing record") as err:
            op()
        assert repr(name) in str(err.value) or repr(label + label_suffix) in str(err.value)
        assert not target.exists() or not any(target.rglob("*"))
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "x.txt").exists()


def test_snapshot_create_download_remove(cfs, client, tmp_path, label):
    files = make_tree(tmp_path / "src")
    cfs.sync(tmp_path / "src", label, True)
    snap = cfs.create_snapshot(label)
    assert len(snap.fileids) == 4 and snap.label == label
    write(tmp_path / "src" / "a.txt", "newer")
    cfs.sync(tmp_path / "src", label, True)
    cfs.download_snapshot(snap.snapshotid, tmp_path / "snap")
    assert tree(tmp_path / "snap") == files
    again = cfs.download_snapshot(snap.snapshotid, tmp_path / "snap")
    assert not again.downloaded  # identical files are skipped
    cfs.remove_snapshot(snap.snapshotid)
    with pytest.raises(SyncError):
        cfs.download_snapshot(snap.snapshotid, tmp_path / "gone")


def test_go_cli_shaped_record_downloads(cfs, client, s3, tmp_path, label):
    data = os.urandom(30_000)
    obj = uuid.uuid4().hex * 2
    cfs.store.ensure_bucket()
    cfs.store.put_small(obj, data)
    client.add_file(File(colonyname="dev", label=label, name="big_200MB.bin", size=len(data), checksum=sha(data),
                         checksumalg="SHA256", ref=Reference(protocol="s3", s3object=S3Object(
                             server=s3.endpoint, port=-1, tls=False, accesskey="GO-CLI-ACCESS",
                             secretkey="GO-CLI-SECRET", region="us-east-1", object=obj, bucket=s3.bucket))))
    cfs.pull(label, tmp_path / "dst")
    assert (tmp_path / "dst" / "big_200MB.bin").read_bytes() == data
    snap = cfs.create_snapshot(label)
    cfs.download_snapshot(snap.snapshotid, tmp_path / "snap")
    assert (tmp_path / "snap" / "big_200MB.bin").read_bytes() == data


def test_rpc_failures_are_retried(server, s3, tmp_path, label):
    make_tree(tmp_path / "src")
    write(tmp_path / "seed" / "a.txt", "an older a.txt")
    with server.client() as c:
        CFS(c, s3).sync(tmp_path / "seed", label, True)  # so the label exists and is listed
    with FaultProxy(server.endpoint) as proxy, server.client(proxy.endpoint) as c:
        proxy.fail(rpc_is("getfilelabelsmsg"), "colonies_500", times=2)
        proxy.fail(rpc_is("getfilesmsg"), "drop", times=1)
        proxy.fail(rpc_is("addfilemsg"), "colonies_500", times=2)
        proxy.fail(rpc_is("addfilemsg"), "drop", times=1)
        report = CFS(c, s3).sync(tmp_path / "src", label, True)
        assert len(report.uploaded) == 4  # a.txt is a conflict, kept local
        assert [r.hits for r in proxy.rules] == [2, 1, 2, 1]
    with server.client() as c:
        CFS(c, s3).pull(label, tmp_path / "copy")
    assert tree(tmp_path / "copy") == tree(tmp_path / "src")


def test_persisting_rpc_failure_names_the_file(server, s3, tmp_path, label):
    write(tmp_path / "src" / "stuck.txt", "x")
    with FaultProxy(server.endpoint) as proxy, server.client(proxy.endpoint) as c:
        proxy.fail(rpc_is("addfilemsg"), "colonies_500", times=None)
        with pytest.raises(SyncError, match=f"{label}/stuck.txt"):
            CFS(c, s3).sync(tmp_path / "src", label, True)


def test_s3_failures_are_retried_and_truncation_leaves_nothing(client, moto_endpoint, tmp_path, label):
    with FaultProxy(moto_endpoint) as proxy:
        cfs = CFS(client, s3_settings(proxy.endpoint), workers=4)
        files = make_tree(tmp_path / "src")
        proxy.fail(lambda m, p, b: m == "PUT" and p.count("/") >= 2, "s3_500", times=3)
        cfs.sync(tmp_path / "src", label, True)
        obj = client.get_file(label=f"{label}/sub/deeper", name="c.bin")[0].ref.s3object.object
        proxy.fail(lambda m, p, b: m == "GET" and obj in p, "truncate", times=None)
        dst = tmp_path / "dst"
        with pytest.raises(SyncError, match="c.bin"):
            cfs.pull(label, dst)
        assert not (dst / "sub" / "deeper" / "c.bin").exists()
        assert not [p for p in dst.rglob(".cfs-tmp*")]
        proxy.clear()
        cfs.pull(label, dst)
        assert tree(dst) == files


# -- CLI -------------------------------------------------------------------------------
@pytest.fixture
def cli_env(server, s3, monkeypatch):
    env = {"COLONIES_SERVER_HOST": server.host, "COLONIES_SERVER_PORT": str(server.port),
           "COLONIES_PRVKEY": server.user_key, "COLONIES_COLONY_NAME": "dev", "COLONIES_TLS": "false",
           "AWS_S3_ENDPOINT": s3.endpoint, "AWS_S3_ACCESSKEY": "test-access", "AWS_S3_SECRETKEY": "test-secret",
           "AWS_S3_BUCKET": s3.bucket}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def cli():
    from pollinator.cli import fs

    app = typer.Typer()
    app.command("sync")(fs.sync_command)
    app.command("pull")(fs.pull_command)
    app.add_typer(fs.fs_app, name="fs")
    return app


def test_cli_sync_dry_run_pull_ls(cli, cli_env, tmp_path, label):
    runner = CliRunner(env={"COLUMNS": "250"})
    files = make_tree(tmp_path / "src")
    r = runner.invoke(cli, ["sync", str(tmp_path / "src"), "-l", label, "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "upload 4 file(s)" in r.output and "a.txt" in r.output
    r = runner.invoke(cli, ["sync", str(tmp_path / "src"), "-l", label])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["sync", str(tmp_path / "src")])  # label from the .cfs marker
    assert r.exit_code == 0 and "already in sync" in r.output, r.output
    r = runner.invoke(cli, ["pull", label, str(tmp_path / "out"), "--dry-run"])
    assert r.exit_code == 0 and "download 4 file(s)" in r.output and not (tmp_path / "out").exists()
    r = runner.invoke(cli, ["pull", label, str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert tree(tmp_path / "out") == files
    assert not list((tmp_path / "out").rglob(".cfs")), "a pulled directory holds the user's files only"
    r = runner.invoke(cli, ["fs", "ls", label])
    assert r.exit_code == 0 and "c.bin" in r.output
    r = runner.invoke(cli, ["fs", "ls"])
    assert r.exit_code == 0 and f"{label}/sub" in r.output


def test_cli_errors_are_one_line_with_exit_codes(cli, cli_env, monkeypatch, tmp_path):
    runner = CliRunner()
    monkeypatch.delenv("AWS_S3_BUCKET")
    r = runner.invoke(cli, ["sync", str(tmp_path), "-l", "/x"])
    assert r.exit_code == 2 and "AWS_S3_BUCKET" in r.output and "Traceback" not in r.output
    monkeypatch.setenv("AWS_S3_BUCKET", "b")
    monkeypatch.setenv("COLONIES_SERVER_PORT", "1")  # nothing listens there
    r = runner.invoke(cli, ["pull", "/nothing", str(tmp_path / "o")])
    assert r.exit_code == 1 and r.output.count("error:") == 1


def test_cli_pull_process_fetches_its_synced_dirs(cli, cli_env, client, cfs, tmp_path, label):
    from pollinator.colonies.models import Conditions, Filesystem, FunctionSpec, SyncDirMount

    write(tmp_path / "res" / "out.txt", "result!")
    cfs.sync(tmp_path / "res", f"{label}/result", True)
    spec = FunctionSpec(funcname="execute", conditions=Conditions(colonyname="dev", executortype="nobody"),
                        fs=Filesystem(dirs=[SyncDirMount(label=f"{label}/result", dir=f"{label}/result")]))
    process = client.submit(spec)
    r = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["pull", process.processid, str(tmp_path / "cfs")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cfs" / "result" / "out.txt").read_text() == "result!"
