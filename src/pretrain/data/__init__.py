"""Data curation: sources -> normalise -> filter -> dedup -> decontaminate -> weighted mix."""
