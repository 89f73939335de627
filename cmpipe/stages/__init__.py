"""The stages: the only place where a :class:`cmpipe.config.Config` becomes plain arguments.

Each stage module has a Ray-free ``run(cfg, paths)``; :mod:`cmpipe.pipeline` runs the same
units of work on Ray.
"""
