"""A stand-in for the core ``Job``: records what the adapter asked for and plays a scripted run."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from pollinator.errors import JobFailed
from pollinator.run import JobResult

PRVKEY = "ab" * 32
S3_SECRET = "s3-secret-value-do-not-leak"
ENV = {
    "COLONIES_SERVER_HOST": "colony.example",
    "COLONIES_SERVER_PORT": "50443",
    "COLONIES_TLS": "true",
    "COLONIES_COLONY_NAME": "dev",
    "COLONIES_PRVKEY": PRVKEY,
    "AWS_S3_ENDPOINT": "s3.example:9000",
    "AWS_S3_ACCESSKEY": "access",
    "AWS_S3_SECRETKEY": S3_SECRET,
    "AWS_S3_BUCKET": "pollinator",
    "AWS_S3_REGION_KEY": "eu-north-1",
    "AWS_S3_TLS": "true",
    "COLONYOS_DASHBOARD_URL": "https://dash.example",
}


@dataclass
class Script:
    """What the next fake runs do, in order: "ok", "fail", "usage" (a ProjectError) or "hang"."""

    outcomes: list[str] = field(default_factory=lambda: ["ok"])
    lines: list[str] = field(default_factory=lambda: ["hello from the executor", "100% done"])
    return_value: Any = None
    jobs: list["FakeJob"] = field(default_factory=list)
    attached_tokens: set = field(default_factory=set)

    def next(self) -> str:
        return self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]


class FakeJob:
    def __init__(self, script: Script, kind: str, token: Optional[str], **call: Any):
        self.script, self.kind, self.token, self.call = script, kind, token, call
        self.process_id: Optional[str] = None
        self.attached = token in script.attached_tokens
        self.cancelled = False
        self.closed = False
        script.jobs.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.closed = True

    def _result(self, state: str, errors: list[str]) -> JobResult:
        return JobResult(process_id=self.process_id or "", state=state, errors=errors,
                         result_label="/pollinator/fake/result", result_files=["metrics.json", "model|v1.bin"],
                         dashboard_url=f"http://dash.example/process?processid={self.process_id}", seconds=1.5,
                         return_value=self.script.return_value)

    def _start(self, on_submit: Optional[Callable[[str], Any]]) -> str:
        self.process_id = f"proc-{len(self.script.jobs)}"
        if on_submit:
            on_submit(self.process_id)
        return self.script.next()

    def _end(self, outcome: str) -> JobResult:
        if outcome == "usage":
            from pollinator.errors import ProjectError

            raise ProjectError("the return value in /pollinator/fake/result/.pollinator/return.json is not valid JSON")
        if outcome == "fail":
            result = self._result("FAILED", ["Traceback: ValueError: remote boom"])
            raise JobFailed(f"process {self.process_id} ended FAILED: remote boom", process_id=self.process_id,
                            state="FAILED", errors=result.errors, result=result)
        return self._result("SUCCESS", [])

    def run(self, on_log=None, timeout=None, on_submit=None) -> JobResult:
        outcome = self._start(on_submit)
        try:
            for line in self.script.lines:
                on_log(line)
            while outcome == "hang":
                time.sleep(0.05)
        except BaseException:
            self.cancelled = True  # what the core's Job.run does
            raise
        return self._end(outcome)

    async def arun(self, on_log=None, timeout=None, on_submit=None) -> JobResult:
        outcome = self._start(on_submit)
        try:
            for line in self.script.lines:
                on_log(line)
            while outcome == "hang":
                await asyncio.sleep(0.05)
        except BaseException:
            self.cancelled = True
            raise
        return self._end(outcome)


def install(monkeypatch, script: Script) -> None:
    """Route the adapter's three core entry points to fakes."""
    import pollinator_prefect.tasks as tasks

    def remote_function_job(settings, func, args, kwargs, *, token=None, source=None, **options):
        return FakeJob(script, "function", token, settings=settings, func=func, args=args, kwargs=kwargs,
                       source=source, options=options)

    class Job:
        @staticmethod
        def from_project(project_dir, settings, *, token=None, **overrides):
            return FakeJob(script, "project", token, project_dir=project_dir, settings=settings, options=overrides)

        @staticmethod
        def inline(settings, *, token=None, **fields):
            return FakeJob(script, "inline", token, settings=settings, options=fields)

    monkeypatch.setattr(tasks, "remote_function_job", remote_function_job)
    monkeypatch.setattr(tasks, "Job", Job)
