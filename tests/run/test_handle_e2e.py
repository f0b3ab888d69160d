"""The process handle against a real local colony: one handle whether submitted or attached by id."""

from __future__ import annotations

import asyncio
import os

from pollinator.run import shared
from pollinator.run import Job, ProcessHandle
from pollinator.run.handle import RUN_ID_ENV


def _user_lines(logs) -> list[str]:
    """The job's own lines (the executor adds its own, prefixed [executor])."""
    return [t.strip() for log in logs for t in log.message.splitlines() if t.startswith("line ")]


def _job(settings, tmp_path, **kw):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "job.py").write_text(
        "import os\n"
        "for i in range(3): print('line', i, flush=True)\n"
        "open(os.path.join(os.environ['POLLINATOR_RESULT_DIR'], 'out.txt'), 'w').write(os.environ['"
        + RUN_ID_ENV + "'])\n")
    fields = dict(name="h-" + os.urandom(4).hex(), image="python:3.12", executor_names=["dev-k8s"],
                  cmd="python3", source="job.py", src_dir=src, walltime=120,
                  result_label=f"/pollinator/h-{os.urandom(4).hex()}/result")
    fields.update(kw)
    return Job.inline(settings, **fields)


def test_attach_by_id_learns_the_run_from_the_process_spec(settings, tmp_path):
    """A handle attached with nothing but the id finds the result label and run id the submitter used."""
    job = _job(settings, tmp_path)
    with job:
        pid = job.submit()
        assert job.handle is not None and job.handle.process_id == pid
        run_id = job.run_id
        assert run_id and job.handle.run_id == run_id
        label = job.result_label
    with ProcessHandle.attach(settings, pid, result_dir=tmp_path / "elsewhere") as handle:
        lines = _user_lines(handle.follow())
        assert lines == ["line 0", "line 1", "line 2"]
        result = handle.finish()
        assert handle.result_label == label and handle.run_id == run_id
        assert result.ok and result.result_files == ["out.txt"]
        assert (tmp_path / "elsewhere" / "out.txt").read_text() == run_id
        cfs = handle.cfs  # made for the download: closing the handle releases its pools
        holders = shared.users(settings)
    assert handle.connections._client is None and handle.connections._cfs is None
    assert shared.users(settings) == holders - 1  # the handle gave its lease back
    if shared.users(settings) == 0:  # no other job of this process shares the pools: they are closed
        assert cfs.store._lean is None and cfs.store._client is None


def test_a_cursor_continues_after_the_last_line_delivered(settings, tmp_path):
    """follow(since=cursor) on a fresh handle yields exactly the entries after the cursor."""
    with _job(settings, tmp_path) as job:
        job.submit()
        assert job.handle is not None
        job.handle.wait(timeout=120)
        entries = list(job.handle.follow())
    user = next(i for i, log in enumerate(entries) if "line 0" in log.message)
    assert user > 0  # the executor speaks first
    with ProcessHandle.attach(settings, job.handle.process_id, since=entries[user - 1].timestamp) as handle:
        rest = list(handle.follow())
        assert handle.last_timestamp == entries[-1].timestamp
    assert [log.message for log in rest] == [log.message for log in entries[user:]]
    assert _user_lines(rest) == ["line 0", "line 1", "line 2"]


def test_async_handle_closes_its_async_client(settings, tmp_path):
    with _job(settings, tmp_path) as job:
        pid = job.submit()

    async def main() -> list[str]:
        async with ProcessHandle.attach(settings, pid) as handle:
            lines = _user_lines([line async for line in handle.afollow()])
            assert handle.connections._aclient is not None
        assert handle.connections._aclient is None and handle.connections._client is None
        return lines

    assert asyncio.run(main()) == ["line 0", "line 1", "line 2"]


def test_fetch_lists_the_result_label_once(settings, tmp_path):
    """The names reported and the download plan come from one listing of the result label."""
    with _job(settings, tmp_path) as job:
        pid = job.submit()
        assert job.handle is not None
        job.handle.wait(timeout=120)
    with ProcessHandle.attach(settings, pid, result_dir=tmp_path / "got") as handle:
        calls = []
        real = handle.client.get_file_labels
        handle.client.get_file_labels = lambda *a, **k: calls.append(a) or real(*a, **k)  # type: ignore[method-assign]
        assert handle.fetch_results() == ["out.txt"]
        assert len(calls) == 1
        assert (tmp_path / "got" / "out.txt").exists()
