"""Printing for the ``pollinator`` command: safe text, one-line errors, tables and JSON.

Everything a server sends (log lines, executor names, error messages) is
untrusted: an escape sequence in it could rewrite the terminal, retitle the
window or hide text, and ``[...]`` in it would be read as rich markup. So
server text goes through :func:`safe_text` and is printed as plain
:class:`rich.text.Text`, never as markup.

rich is imported on first use (tables, coloured errors), not at import: status
lines and log lines are plain writes, and a short `pollinator run --follow`
should not pay rich's start-up.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

# C0 controls (but \t, \n handled separately), DEL, C1 controls (a lone 0x9b is a CSI on some terminals),
# and the bidi overrides/isolates that can make text display differently from what it is.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSW|CREDENTIAL|AUTH)", re.IGNORECASE)
MASK = "***"


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(value: Any, *, multiline: bool = False) -> str:
    """``value`` as text with every terminal control made visible (``ESC`` -> ``\\x1b``).

    With ``multiline`` newlines and tabs are kept and carriage returns become
    newlines (so a progress bar cannot overwrite earlier output); otherwise
    they are made visible too, keeping one value on one line.
    """
    text = "" if value is None else str(value)
    if multiline:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    else:
        text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return _UNSAFE.sub(_visible, text)


def plain(value: Any, *, multiline: bool = False, style: str = "") -> Text:
    """Server text as a rich ``Text`` (safe, and never parsed as markup)."""
    from rich.text import Text

    return Text(safe_text(value, multiline=multiline), style=style)


def stdout() -> Console:
    """A console on the *current* ``sys.stdout`` (so test runners that swap it see the output).

    Piped output gets a wide fixed width (``$COLUMNS`` or 200) instead of rich's 80, so ids stay on
    one line for ``grep``/``awk`` and copy-paste.
    """
    from rich.console import Console

    width: Optional[int] = None
    if not sys.stdout.isatty():
        try:
            width = int(os.environ.get("COLUMNS", "")) or 200
        except ValueError:
            width = 200
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width)


def stderr() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def print_error(message: Any, *, prefix: str = "error") -> None:
    """``error: <message>`` on stderr, in red when stderr is a terminal."""
    from rich.text import Text

    line = Text(f"{prefix}: ", style="bold red")
    line.append(safe_text(message, multiline=True))
    stderr().print(line)


def print_info(message: Any) -> None:
    """A status line on stderr, keeping stdout clean for data (plain text: it carries no style)."""
    text = safe_text(message, multiline=True)
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def echo_raw(text: str) -> None:
    """Write data to stdout as is (JSON, a spec), without rich wrapping or colours."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def write_log(message: Any) -> None:
    """Stream one server log message to stdout as the job wrote it (newlines kept, controls neutralised).

    Unlike :func:`echo_raw` no newline is added: executors send partial lines too.
    """
    sys.stdout.write(safe_text(message, multiline=True))
    sys.stdout.flush()


def print_json(data: Any) -> None:
    """Machine-readable output for ``--json``; ``ensure_ascii`` escapes any control characters."""
    echo_raw(json.dumps(data, indent=2, ensure_ascii=True))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: Optional[str] = None,
          no_wrap: Sequence[str] = ()) -> Table:
    """A table whose cells are all safe plain text; ``no_wrap`` columns (ids) are never folded."""
    from rich.table import Table
    from rich.text import Text

    out = Table(title=title, header_style="bold", box=None, pad_edge=False)
    for col in columns:
        out.add_column(col, overflow="fold", no_wrap=col in no_wrap)
    for row in rows:
        out.add_row(*(cell if isinstance(cell, Text) else plain(cell) for cell in row))
    return out


def fmt_time(go_time: str) -> str:
    """A Go timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC, or ``-`` for Go's zero time."""
    from pollinator.colonies.models import parse_go_time

    try:
        dt = parse_go_time(go_time)
    except ValueError:
        return go_time or "-"
    return dt.strftime("%Y-%m-%d %H:%M:%S") if dt else "-"


def fmt_nanos(nanos: int) -> str:
    if not nanos:
        return "-"
    return datetime.fromtimestamp(nanos / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def mask_env(env: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """Hide the values of variables whose names look secret (keys, tokens, passwords)."""
    if env is None:
        return None
    return {k: (MASK if _SECRET_NAME.search(k) and v not in ("", None) else v) for k, v in env.items()}
