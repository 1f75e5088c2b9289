"""The `pretrain` command line: argparse only. Each verb is one typed function of `commands/` (see `VERBS`).

    pretrain validate recipes/*/config.yaml
    pretrain preflight recipes/smollm2-135m/config.yaml    # go / no-go in a minute: every check a run can fail
    pretrain plan recipes/smollm2-135m/config.yaml [--json]
    pretrain plan --budget-gpu-hours 1000 --gpu h100
    pretrain plan recipes/llama-3.1-8b/config.yaml --gpus 64
    pretrain ladder recipes/tiny/config.yaml               # small runs -> the recipe's own scaling law
    pretrain mixture RECIPE                                # proxies on candidate mixes -> the proposed mix
    pretrain run recipes/tiny/config.yaml                  # every stage, skipping current ones
    pretrain curate|tokenizer|pack RECIPE                  # one data stage
    accelerate launch --config_file accelerate_configs/ddp.yaml -m pretrain train RECIPE [--resume auto]
    pretrain eval outputs/tiny/final --tasks val_bpb       # or OUTPUT_DIR for every checkpoint
    pretrain inspect-batch outputs/tiny --step 372         # the documents of a step's batch
    pretrain push outputs/tiny/final --repo-id me/tiny [--dry-run DIR]
    pretrain average outputs/tiny/checkpoints/step-0000180 .../step-0000200 --output outputs/tiny/avg
    pretrain anneal outputs/tiny/checkpoints/step-0000120 --output-dir outputs/tiny-anneal --tokens 491520 \
        --weight stdlib_docs=3 --weight stdlib_code=1        # branch a decay on a new mix from a stable checkpoint
    pretrain explain train.optimizer.lr [--recipe RECIPE]  # type, default, description of a recipe key

Every command takes `--set dotted.key=value` (typed and validated like the YAML) and `--output-dir`.
User errors print `file: key: problem` lines and exit 1 without a traceback. Commands that work on a run
folder (the stages, `run`, `eval`) keep what libraries print (progress bars, warnings) in its `pretrain.log`;
the console shows our lines: progress, one line per validation and evaluation, each stage's summary.

A new verb: its arguments in `parser.py` (`build_parser`), its body as one function in `commands/<verb>.py`, and one
line in `verbs.py` (`VERBS`) that calls it with the parsed arguments.
"""

from __future__ import annotations

import os
import sys

from pretrain.cli.parser import build_parser
from pretrain.core.dist import release_process_group
from pretrain.core.errors import CurationSubmitted, Interrupted, PretrainError
from pretrain.core.progress import enable_crash_traces
from pretrain.core.supervisor import report_failure

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)  # --help, --version and usage errors end here, in well under 1 s
    # the commands import torch, transformers and datasets (seconds): only once a verb is to run
    from pretrain.cli.verbs import VERBS, stage_verb

    enable_crash_traces(sys.stderr)  # a native crash (SIGSEGV) prints the Python stack on stderr
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        # the stages: one verb each, from the registry
        command = VERBS.get(args.command) or stage_verb(args.command)
        return int(command(args, argv) or 0)
    except CurationSubmitted as exc:  # handed to Slurm: the user re-runs when the jobs finish
        print(str(exc))
        return 0
    except PretrainError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        report_failure(str(exc))  # a supervising parent must not restart a job over its input
        return 1
    except Interrupted as exc:  # stopped by a signal after its checkpoint: not a success
        print(f"stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pretrain plan R | head`: the reader left early, which is not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except OSError as exc:  # a path the system refused (permissions, a file where a folder goes, a full disk)
        if exc.filename is None:
            raise
        line = f"{exc.filename}: {exc.strerror or exc}; check the path and that you may write there"
        print(f"error: {line}", file=sys.stderr)
        report_failure(line)
        return 1
    finally:
        release_process_group()
