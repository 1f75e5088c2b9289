"""The training stage (`pretrain train`).

setup.py         builds everything once (accelerator, model, optimizer, tokenizer, loaders, lengths)
loop.py          the Trainer: `train_step` and the loop; `run_training` is the stage function
callbacks/       what hangs on the loop: speed monitor, validation, evaluation, preemption,
                 checkpointing, spike guard
state.py         the trainer's counters (what a checkpoint's state.json holds)
checkpoint.py    the checkpoint format (`trainer_state/` names, read / write)
checkpointer.py  checkpoint save / restore / final across ranks (barriers)
metrics.py       the metrics.jsonl record shapes, writer and readers
step.py          forward/backward and clipping (also measured by bench/train_throughput.py)
fused_loss.py    the LM head fused into the cross-entropy, chunk by chunk (train.fused_cross_entropy)
stability.py     the spike guard's decision; faults.py: test-only fault injection; rng.py: RNG states
"""
