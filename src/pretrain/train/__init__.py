"""The training loop (`pretrain train`): loop.py runs it, setup.py builds what it needs, checkpoint.py owns
the checkpoint format."""
