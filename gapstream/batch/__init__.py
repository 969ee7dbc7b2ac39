"""``gapstream batch``: many recorded files through many pipelines, locally or on a Ray cluster.

One module per job: ``inputs`` (what to process), ``manifest`` (what is done, for re-runs),
``job`` (one file through one pipeline, outputs written atomically), ``events`` (person-present
intervals), ``pool`` (local worker processes), ``ray_runner`` (one Ray task per file),
``progress`` and ``summary`` (what the user sees), ``driver`` (the run) and ``cli``.
"""
