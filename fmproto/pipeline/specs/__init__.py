"""The params of each section of params.yaml: one module a section, a dep only of the stages that read it.

Each has ``SPEC`` (key -> checker, ``fmproto.pipeline.params``) and ``read(path)``, the checked section.
"""
