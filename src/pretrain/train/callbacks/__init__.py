"""The concerns that hang on the training loop, one module each (as in torchtitan / OLMo-core).

`base.Callback` lists the hooks. The trainer calls them in list order, which matters: the step record
is logged before validation and evaluation, and every rank agrees on stopping (`preemption`) before
the checkpoint that a stop forces (`checkpointing`).
"""
