"""Tokens: the tokenizer, its report, packing into token shards, the resumable loader.

Owned format: the token manifest (manifest.py), written by pack.py, read by the loader, validation and the card.
"""
