"""The ``fmproto`` command: ``fmproto explain``, ``fmproto report`` and ``fmproto fetch``."""

import argparse

from fmproto.cli import explain, fetch, report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="fmproto", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    explain.add_arguments(commands.add_parser("explain", help="explain one prediction with its nearest training images"))
    report.add_arguments(commands.add_parser("report", help="Markdown report of metrics and params against a base"))
    fetch.add_arguments(commands.add_parser("fetch", help="get the real Fashion-MNIST files into data.dir, checked"))
    args = parser.parse_args(argv)
    {"explain": explain.run, "report": report.run, "fetch": fetch.run}[args.command](args)


if __name__ == "__main__":
    main()
