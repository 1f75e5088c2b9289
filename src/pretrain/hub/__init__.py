"""Base-model handoff: the model card (card.py), Hub uploads (push.py, pusher.py), `pretrain push` (command.py)."""
