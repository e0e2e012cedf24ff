"""User-facing errors.

Anything the user can fix (a bad path, an unknown name, a shape that does not divide) raises
:class:`NNPruneError`. The CLI's single error boundary prints its message as one line and exits 2;
any other exception is a bug and keeps its traceback.
"""


class NNPruneError(Exception):
    """An error caused by user input, reported as a single line without a traceback.

    Example::

        try:
            nnprune.attach_masks(model, "nope")
        except nnprune.NNPruneError as e:
            print(e)   # unknown method 'nope'; known: block, dense, ...
    """
