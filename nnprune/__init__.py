"""nnprune: prune transformers while fine-tuning, into models that are physically smaller."""

__version__ = "0.1.0"
