"""``python -m fmproto``: the ``fmproto`` command without its script on PATH."""

from fmproto.cli.main import main

main()
