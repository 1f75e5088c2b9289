"""Data curation: sources -> normalise -> filter -> dedup -> decontaminate -> weighted mix.

Owned formats: the mix (mixio.py) and curation's per-shard pass records (records.py).
"""
