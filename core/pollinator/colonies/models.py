"""Pydantic models of everything on the Colonies wire.

Field order and JSON names follow the Go structs in colonyos/colonies
``pkg/core`` so a dumped model looks like what the Go server and CLI send.
Unknown fields are kept (``extra="allow"``) so a newer server's replies
survive a parse/dump round trip. Go's nil slices arrive as ``null``; those
fields are ``Optional`` and keep ``None``. Go times stay strings: re-formatting
them would change what we send back, and ``parse_go_time`` gives a datetime
when one is needed.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_go_time(value: str) -> Optional[datetime]:
    """A Go RFC3339Nano time as an aware datetime; ``None`` for Go's zero time."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.replace("Z", "+00:00")
    # Python accepts at most 6 fractional digits; Go sends up to 9.
    if "." in text:
        head, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, tz = rest[:digits], rest[digits:]
        text = f"{head}.{frac[:6].ljust(6, '0')}{tz}"
    return datetime.fromisoformat(text)


def go_time(dt: Optional[datetime] = None) -> str:
    """Format like Go's time.Time JSON (RFC3339Nano, UTC, trailing zeros trimmed)."""
    if dt is None:
        return GO_ZERO_TIME
    dt = dt.astimezone(timezone.utc)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        base += ("." + f"{dt.microsecond:06d}").rstrip("0")
    return base + "Z"


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with the server's field names."""
        return self.model_dump(mode="json", by_alias=True)


class ProcessState(enum.IntEnum):
    WAITING = 0
    RUNNING = 1
    SUCCESS = 2
    FAILED = 3
    CANCELLED = 4

    @property
    def is_final(self) -> bool:
        return self in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)


class ExecutorState(enum.IntEnum):
    PENDING = 0
    APPROVED = 1
    REJECTED = 2


class GPU(WireModel):
    name: str = ""
    mem: str = ""
    count: int = 0
    nodecount: int = 0


class Conditions(WireModel):
    colonyname: str = ""
    executornames: Optional[list[str]] = None
    executortype: str = ""
    dependencies: Optional[list[str]] = None
    nodes: int = 0
    cpu: str = ""
    processes: int = 0
    processespernode: int = 0
    mem: str = ""
    storage: str = ""
    gpu: GPU = Field(default_factory=GPU)
    walltime: int = 0


class SnapshotMount(WireModel):
    snapshotid: str = ""
    label: str = ""
    dir: str = ""
    keepfiles: bool = False
    keepsnapshot: bool = False


class OnStart(WireModel):
    keeplocal: bool = False


class OnClose(WireModel):
    keeplocal: bool = False


class ConflictResolution(WireModel):
    onstart: OnStart = Field(default_factory=OnStart)
    onclose: OnClose = Field(default_factory=OnClose)


class SyncDirMount(WireModel):
    label: str = ""
    dir: str = ""
    keepfiles: bool = False
    onconflicts: ConflictResolution = Field(default_factory=ConflictResolution)


class Filesystem(WireModel):
    mount: str = ""
    snapshots: Optional[list[SnapshotMount]] = None
    dirs: Optional[list[SyncDirMount]] = None


class FunctionSpec(WireModel):
    nodename: str = ""
    funcname: str = ""
    args: Optional[list[Any]] = None
    kwargs: Optional[dict[str, Any]] = None
    priority: int = 0
    maxwaittime: int = 0
    maxexectime: int = 0
    maxretries: int = 0
    conditions: Conditions = Field(default_factory=Conditions)
    label: str = ""
    fs: Filesystem = Field(default_factory=Filesystem)
    env: Optional[dict[str, str]] = None


class Attribute(WireModel):
    attributeid: str = ""
    targetid: str = ""
    targetcolonyname: str = ""
    targetprocessgraphid: str = ""
    state: int = 0
    attributetype: int = 0
    key: str = ""
    value: str = ""


class Process(WireModel):
    processid: str = ""
    initiatorid: str = ""
    initiatorname: str = ""
    assignedexecutorid: str = ""
    isassigned: bool = False
    state: int = 0
    prioritytime: int = 0
    submissiontime: str = GO_ZERO_TIME
    starttime: str = GO_ZERO_TIME
    endtime: str = GO_ZERO_TIME
    waitdeadline: str = GO_ZERO_TIME
    execdeadline: str = GO_ZERO_TIME
    retries: int = 0
    attributes: Optional[list[Attribute]] = None
    spec: FunctionSpec = Field(default_factory=FunctionSpec)
    waitforparents: bool = False
    parents: Optional[list[str]] = None
    children: Optional[list[str]] = None
    processgraphid: str = ""
    in_: Optional[list[Any]] = Field(default=None, alias="in")
    out: Optional[list[Any]] = None
    errors: Optional[list[str]] = None

    @property
    def id(self) -> str:
        return self.processid

    @property
    def process_state(self) -> ProcessState:
        return ProcessState(self.state)

    @property
    def is_final(self) -> bool:
        return self.process_state.is_final


class Software(WireModel):
    name: str = ""
    type: str = ""
    version: str = ""


class Hardware(WireModel):
    model: str = ""
    nodes: int = 0
    cpu: str = ""
    cores: int = 0
    mem: str = ""
    storage: str = ""
    gpu: GPU = Field(default_factory=GPU)
    platform: str = ""
    architecture: str = ""
    network: Optional[list[str]] = None


class Capabilities(WireModel):
    hardware: Optional[list[Hardware]] = None
    software: Optional[list[Software]] = None


class Allocations(WireModel):
    projects: Optional[dict[str, Any]] = None


class Executor(WireModel):
    executorid: str = ""
    executortype: str = ""
    executorname: str = ""
    colonyname: str = ""
    state: int = 0
    requirefuncreg: bool = False
    commissiontime: str = GO_ZERO_TIME
    lastheardfromtime: str = GO_ZERO_TIME
    capabilities: Capabilities = Field(default_factory=Capabilities)
    allocations: Allocations = Field(default_factory=Allocations)


class Colony(WireModel):
    colonyid: str = ""
    name: str = ""


class S3Object(WireModel):
    server: str = ""
    port: int = 0
    tls: bool = False
    accesskey: str = Field(default="", repr=False)
    secretkey: str = Field(default="", repr=False)
    region: str = ""
    encryptionkey: str = Field(default="", repr=False)
    encryptionalg: str = ""
    object: str = ""
    bucket: str = ""


class Reference(WireModel):
    protocol: str = ""
    s3object: S3Object = Field(default_factory=S3Object)


class File(WireModel):
    fileid: str = ""
    colonyname: str = ""
    label: str = ""
    name: str = ""
    size: int = 0
    sequencenr: int = 0
    checksum: str = ""
    checksumalg: str = ""
    ref: Reference = Field(default_factory=Reference)
    added: str = GO_ZERO_TIME


class FileSummary(WireModel):
    """One row of getfilesmsg: the latest revision of each name in a label."""

    name: str = ""
    checksum: str = ""
    size: int = 0
    s3filename: str = ""


class Label(WireModel):
    name: str = ""
    files: int = 0


class Snapshot(WireModel):
    snapshotid: str = ""
    colonyname: str = ""
    label: str = ""
    name: str = ""
    fileids: Optional[list[str]] = None
    added: str = GO_ZERO_TIME


class Log(WireModel):
    processid: str = ""
    colonyname: str = ""
    executorname: str = ""
    message: str = ""
    timestamp: int = 0  # UTC Unix time in nanoseconds


class Statistics(WireModel):
    colonies: int = 0
    executors: int = 0
    activeexecutors: int = 0
    unregisteredexecutors: int = 0
    waitingprocesses: int = 0
    runningprocesses: int = 0
    successfulprocesses: int = 0
    failedprocesses: int = 0
    cancelledprocesses: int = 0
    waitingworkflows: int = 0
    runningworkflows: int = 0
    successfulworkflows: int = 0
    failedworkflows: int = 0
    cancelledworkflows: int = 0


class User(WireModel):
    colonyname: str = ""
    userid: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""


class ErrorReply(WireModel):
    status: int = 0
    message: str = ""
