"""The ``fmproto`` command: ``fmproto explain`` and ``fmproto report`` (the data comes from the fetch stage)."""

import argparse
import os
import sys

from fmproto.cli import explain, report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="fmproto", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    explain.add_arguments(commands.add_parser("explain", help="explain one prediction with its nearest training images"))
    report.add_arguments(commands.add_parser("report", help="Markdown report of metrics and params against a base"))
    args = parser.parse_args(argv)
    try:
        {"explain": explain.run, "report": report.run}[args.command](args)
        sys.stdout.flush()
    except BrokenPipeError:  # `fmproto explain 3 | head -2`: the reader left; the picture is written
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own advice
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
