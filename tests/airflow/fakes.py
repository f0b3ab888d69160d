"""Stand-ins for the core pipeline and Airflow's runtime context, for fast unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import SecretStr

from pollinator.config import S3Settings, Settings
from pollinator.errors import JobFailed
from pollinator.run import JobResult

PRVKEY = "ab" * 32
S3_SECRET = "s3-secret-value-123456"


def settings() -> Settings:
    return Settings(host="colony.example", port=50080, colony_name="dev", prvkey=SecretStr(PRVKEY),
                    dashboard_url="https://dash.example",
                    s3=S3Settings(endpoint="s3.example:9000", access_key=SecretStr("access-key-1"),
                                  secret_key=SecretStr(S3_SECRET), bucket="b"))


class FakeJob:
    """Records calls; ``run`` emits ``lines`` and returns SUCCESS unless ``fail_with`` is set.

    Stands in for both ``Job`` and ``ProcessHandle`` (``attach``, ``cancel``, context manager).
    """

    instances: list["FakeJob"] = []
    submitted: list[str] = []
    cancelled: list[str] = []
    lines = ["hello from the executor", "done"]
    fail_with: Optional[list[str]] = None
    next_id = 0

    def __init__(self, options: Optional[dict[str, Any]] = None, token: Optional[str] = None,
                 process_id: Optional[str] = None) -> None:
        self.options = options or {}
        self.token = token
        self.process_id = process_id
        self.attached = process_id is not None
        FakeJob.instances.append(self)

    @classmethod
    def reset(cls) -> None:
        cls.instances, cls.submitted, cls.cancelled = [], [], []
        cls.earlier_tokens, cls.resumable = [], {}
        cls.fail_with, cls.next_id = None, 0
        cls.lines = ["hello from the executor", "done"]

    def bind(self, process_id: str) -> "FakeJob":
        self.process_id, self.attached = process_id, True
        return self

    @classmethod
    def inline(cls, settings: Settings, *, token: Optional[str] = None, **options: Any) -> "FakeJob":
        return cls(options, token)

    @classmethod
    def from_project(cls, project_dir: Any, settings: Settings, *, token: Optional[str] = None,
                     **options: Any) -> "FakeJob":
        return cls({"project_dir": str(project_dir), **options}, token)

    @classmethod
    def attach(cls, settings: Settings, process_id: str, **kw: Any) -> "FakeJob":
        return cls({}, None, process_id)

    @staticmethod
    def find_existing(settings: Settings, token: str) -> Any:
        return None

    earlier_tokens: list[list[str]] = []
    resumable: dict[str, str] = {}  # token -> process id the core would re-attach to

    @property
    def handle(self) -> Optional["FakeJob"]:
        return self if self.process_id else None

    def submit(self, reattach: bool = True, earlier_tokens: Any = ()) -> str:
        FakeJob.earlier_tokens.append(list(earlier_tokens))
        for token in [self.token, *earlier_tokens]:
            if not self.process_id and token in FakeJob.resumable:
                self.process_id, self.attached = FakeJob.resumable[token], True
        if not self.process_id:
            FakeJob.next_id += 1
            self.process_id = f"proc-{FakeJob.next_id}"
            FakeJob.submitted.append(self.process_id)
        return self.process_id

    def run(self, on_log: Any = None, timeout: Any = None, on_submit: Any = None) -> JobResult:
        self.submit()
        self.watch(on_log)
        return self.finish()

    def watch(self, on_log: Any = None, timeout: Any = None) -> None:
        for line in self.lines:
            if on_log:
                on_log(line)

    def finish(self) -> JobResult:
        if self.fail_with is not None:
            raise JobFailed("failed", process_id=self.process_id or "", state="FAILED", errors=self.fail_with)
        return JobResult(process_id=self.process_id or "", state="SUCCESS", result_label="/pollinator/x/result",
                         result_files=["model.json"], return_value={"answer": 42})

    def cancel(self) -> None:
        FakeJob.cancelled.append(self.process_id or "")

    def close(self) -> None:
        pass

    def __enter__(self) -> "FakeJob":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class FakeTI:
    dag_id: str = "dag"
    task_id: str = "task"
    run_id: str = "manual__1"
    map_index: int = -1
    try_number: int = 1
    xcoms: dict[str, Any] = field(default_factory=dict)
    stats_tags: dict[str, str] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class FakeStore:
    """The ``task_state_store`` accessor of Airflow 3.3."""

    def __init__(self, data: Optional[dict[str, Any]] = None) -> None:
        self.data = dict(data or {})

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **kw: Any) -> None:
        self.data[key] = value


def context(ti: Optional[FakeTI] = None, store: Optional[FakeStore] = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"ti": ti or FakeTI()}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx
