"""The ``pollinator`` console script and ``python -m pollinator.cli``: process-wide start-up trims, then the app.

Start-up is most of a short `pollinator run --follow`. httpx imports its own command line (click,
rich.syntax, pygments) for the `httpx` console script, and httpcore imports h2 whenever it is
installed (an Airflow/Prefect dependency) though Pollinator never asks for HTTP/2. Marking both
absent before anything imports httpx makes them fall back to their stubs: ~60 ms off every start.
This lives here, not in :mod:`pollinator.cli.main`, so only the `pollinator` process (which runs no
user code) is affected, never a program that imports the CLI module.
"""

import sys

for _unused in ("httpx._main", "h2"):
    sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]


def main() -> None:
    from pollinator.cli.main import main as run_app

    run_app()


if __name__ == "__main__":
    main()
