"""The public API's implementation, one module per job; users import it from :mod:`nnprune`."""
