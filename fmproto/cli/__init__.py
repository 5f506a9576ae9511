"""The command-line boundary: params checked, errors as one line, outputs written all or nothing.

The stage scripts (``stages/``) and the ``fmproto`` command use it; the numerical core never does.
"""
