"""One module a params section (``SPEC`` and ``read(path)``), a dep only of the stages that read it."""
