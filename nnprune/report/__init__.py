"""Reports on a pruned checkpoint: a Hugging Face model card and pictures of what was pruned.

:mod:`nnprune.report.plots` draws the pictures (matplotlib, Agg canvas); :mod:`nnprune.report.card`
writes the ``README.md`` model card that shows them. Both are imported on use (matplotlib is
only loaded when a picture is drawn).
"""
