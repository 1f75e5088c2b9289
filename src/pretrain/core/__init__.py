"""Run-independent machinery: errors, atomic writes, the run-folder layout, stage markers, processes, progress."""
