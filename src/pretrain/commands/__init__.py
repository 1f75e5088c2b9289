"""Commands: one module per `pretrain` verb, and every orchestration that runs libraries (the stage registry,
`run`, derived runs, launching). The top layer under `cli.py`: a command may import any library; no library
imports a command (the layers contract in pyproject.toml, checked by `lint-imports`)."""
