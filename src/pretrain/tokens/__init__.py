"""Tokens: the tokenizer, its report, packing into token shards, the resumable loader."""
