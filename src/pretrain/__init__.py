"""pretraining-handbook: recipes for pretraining causal language models from scratch."""

__version__ = "0.1.0"
