"""``fmproto fetch``: put the four real Fashion-MNIST files into ``data.dir``, checked (``make data``).

With ``data.verify: none`` nothing is fetched: the folder must exist and hold files, used as they are.
"""

import argparse
from pathlib import Path

from fmproto import fetch
from fmproto.cli import guard
from fmproto.cli import params as P


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")


def run(args: argparse.Namespace) -> None:
    with guard.stage_errors("fmproto fetch"):
        data = P.read_params("data", {key: P.DATA[key] for key in ("dir", "verify")}, args.params, partial=True)
        directory = Path(data["dir"])
        if data["verify"] == "none":
            files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")] \
                if directory.is_dir() else []
            if not files:
                state = "is empty" if directory.is_dir() else "is not a folder"
                raise ValueError(f"data.dir {directory} {state} (data.verify is 'none', so nothing is fetched)")
            message = f"{directory}: {len(files)} file(s) used as they are (data.verify: none)"
        else:
            try:
                directory, origin = fetch.fetch_with_origin(directory, log=print)
            except fetch.FetchError as err:
                raise ValueError(str(err)) from None
            message = f"{directory}: {len(fetch.FILES)} Fashion-MNIST files verified ({origin})"
    print(message)
