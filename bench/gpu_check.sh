#!/usr/bin/env bash
# gpu_check.sh — everything worth learning from a lent GPU, in one command (see bench/README.md, "GPU").
#
#   bash bench/gpu_check.sh OUT_DIR                   # every step, ~20-25 min on one H100
#   bash bench/gpu_check.sh OUT_DIR tiny resume       # only these steps (setup also runs when imports fail)
#   bash bench/gpu_check.sh OUT_DIR --cpu-rehearsal   # no GPU: the same plumbing, CPU-sized, cpu.yaml everywhere
#   bash bench/gpu_check.sh --fetch-wheels [DIR]      # where PyPI is reachable: wheels the device image lacks -> .whl/
#                                                     #   (GPU_CHECK_WITH_SPACY=1 adds spaCy, ~55 MB more)
#   bash bench/gpu_check.sh --print-sets gpu|cpu tiny|e|resume   # the --set list a step trains with
#
# Steps (in this order; each has a time budget, a log OUT_DIR/<step>.log and one line in OUT_DIR/summary.txt,
# and a failing step does not stop the next):
#   setup   install the tree without internet: wheels from .whl/ (if any) + `pip install --no-deps --no-index -e .`;
#           names every module that still fails to import
#   info    nvidia-smi, torch / CUDA / library versions
#   tests   pytest -m gpu tests/gpu
#   tiny    reduced `pretrain run recipes/tiny/config.yaml` under accelerate single_gpu.yaml, bf16, compile
#   ddp     SmolLM2-135M shape, seq 2048, 200 steps on tiny's builtin data, ddp.yaml --num_processes 1
#   fsdp    the same with fsdp.yaml (FSDP2) --num_processes 1
#   resume  kill -9 after a checkpoint, `--resume auto`, per-step losses vs uninterrupted runs: PASS/FAIL
#   bench   bench/train_throughput.py on the 135M, 360M and 1B shapes -> OUT_DIR/bench.json
#   levers  the 135M shape with one lever changed at a time (compile off, bf16-true, foreach AdamW, Liger)
#           -> OUT_DIR/levers.json
#
# Environment:
#   GPU_CHECK_BUDGET_S   total seconds for this invocation (default 1500); a step gets min(its budget, what is
#                        left) and is skipped when under 30 s are left — use 540 for one 10-minute device call
#   GPU_CHECK_EXPORT     a folder that gets summary.txt and gpu_check_logs.tgz after every step (e.g. $OUT)
#   GPU_CHECK_WORK       run folders (checkpoints, models): default OUT_DIR/work (left out of the tarball)
#   GPU_CHECK_CPU_REHEARSAL=1  same as --cpu-rehearsal (automatic when torch sees no CUDA)
#   GPU_CHECK_TESTS_ON_CPU=1   in a rehearsal, run tests/gpu on the CPU instead of letting them skip
#   PYTHON               interpreter (default python3)
set -u -o pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
REPO="$(cd "$(dirname "$SELF")/.." && pwd)"
cd "$REPO" || exit 2
PY="${PYTHON:-python3}"
ALL_STEPS=(setup info tests tiny ddp fsdp resume bench levers)
SITE="${GPU_CHECK_SITE:-/tmp/gpu_check_site}"   # where carried wheels are installed (--target)

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PRETRAIN_NO_TQDM=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1

set_pythonpath() {
    local pp="$REPO/src"
    [ -d "$SITE" ] && pp="$SITE:$pp"
    export PYTHONPATH="$pp${PYTHONPATH:+:$PYTHONPATH}"
}

# ----------------------------------------------------------------------------------------- wheels
# Pinned to the versions the project is developed with (.venv); the device image ('cuda', Python 3.12) has
# torch, accelerate, tokenizers, tiktoken, safetensors, pyarrow, peft, numpy, pyyaml, jinja2, matplotlib, xxhash,
# pytest, but transformers 5.17 / huggingface_hub 1.33 (too old) and none of the rest. ~45 MB in all.
WHEELS=(
    transformers==5.23.0 huggingface-hub==2.4.0 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    evaluate==0.4.6 lm-eval==0.4.13 more-itertools==11.2.1 pytablewriter==1.2.1 dataproperty==1.1.1
    mbstrdecoder==1.1.5 chardet==6.0.0.post1 pathvalidate==3.3.1 tabledata==1.3.5 tcolorpy==0.1.7 typepy==1.3.5
    pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
    datatrove==0.10.1 loguru==0.7.3 nltk==3.10.4 zstandard==0.25.0 defusedxml==0.7.1
    liger-kernel==0.8.5
    setuptools==84.2.1   # pyproject needs setuptools>=77 to build the editable install; the image's may be older
)
WHEELS_SDIST=(rouge-score==0.1.2 sqlitedict==2.1.0 word2number==1.1)   # no wheels on PyPI: built here (pure Python)
# spacy is only needed by the prose filters (Gopher/FineWeb word tokenizer); tiny's sources do not use them.
WHEELS_SPACY=(
    spacy==3.8.18 spacy-legacy==3.0.12 spacy-loggers==1.0.5 thinc==8.3.14 blis==1.3.4 cymem==2.0.16
    murmurhash==1.0.16 preshed==3.0.15 srsly==2.5.6 wasabi==1.1.3 weasel==1.0.1 confection==1.3.4
    catalogue==2.0.10 cloudpathlib==0.26.0 smart-open==9.0.2
)

fetch_wheels() {
    local dir="${1:-$REPO/.whl}" with_spacy="${GPU_CHECK_WITH_SPACY:-0}"
    mkdir -p "$dir"
    local plat=(--python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64
        --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    local wanted=("${WHEELS[@]}") failed=0
    [ "$with_spacy" = 1 ] && wanted+=("${WHEELS_SPACY[@]}")
    "$PY" -m pip download -q --no-deps --only-binary=:all: "${plat[@]}" -d "$dir" "${wanted[@]}" || failed=1
    "$PY" -m pip wheel -q --no-deps -w "$dir" "${WHEELS_SDIST[@]}" || failed=1
    du -sh "$dir"
    echo "carry it: name .whl in the device call's carry (it must be ignored by git: /.whl/ is in .gitignore)"
    return $failed
}

# ----------------------------------------------------------------------------------------- shapes
# The 135M shape of recipes/smollm2-135m on recipes/tiny's builtin data (vocab 49152 trained on that data).
SHAPE_135M=(
    model.hidden_size=576 model.intermediate_size=1536 model.num_hidden_layers=30
    model.num_attention_heads=9 model.num_key_value_heads=3 model.max_position_embeddings=2048
    model.rope_theta=10000.0 model.rms_norm_eps=1e-5 model.tie_word_embeddings=true
    model.init_std=0.02 model.scaled_residual_init=true model.attn_implementation=sdpa
    tokenizer.vocab_size=49152 train.seq_len=2048
    data.val_fraction=0.1 data.workers=8
)
# tests/conftest.py's SMALL_RUN (pretrain.testing.SMOKE_SHAPE + small data): what the CPU rehearsal trains.
SHAPE_SMOKE=(
    tokenizer.vocab_size=512 model.hidden_size=64 model.intermediate_size=128 model.num_hidden_layers=2
    model.num_attention_heads=2 model.num_key_value_heads=2 model.max_position_embeddings=64
    train.seq_len=64 train.micro_batch_size=4 train.global_batch_tokens=512
    data.mixture.target_bytes=800000 tokenizer.sample_bytes=400000 data.val_fraction=0.1 data.workers=2
)

sets() { local s; for s in "$@"; do printf -- '--set\n%s\n' "$s"; done; }

mode_vars() {
    if [ "${REHEARSAL:-0}" = 1 ]; then
        ACC_SINGLE=accelerate_configs/cpu.yaml ACC_DDP=accelerate_configs/cpu.yaml ACC_FSDP=accelerate_configs/cpu.yaml
        TINY_SETS=("${SHAPE_SMOKE[@]}" eval.tasks=[val_bpb] eval.limit=8 eval.every_fraction=0.5 train.tokens=12288
            train.validation.batches=2 train.compile=false)
        E_SETS=("${SHAPE_SMOKE[@]}" train.tokens=null train.steps=24 train.compile=false
            train.checkpoint.every_fraction=0.5 train.validation.every_fraction=0.5 train.validation.batches=2
            eval.tasks=[val_bpb] eval.limit=8 eval.every_fraction=0.5 train.log_every=4)
        R_SETS=("${SHAPE_SMOKE[@]}" train.tokens=null train.steps=24 train.compile=false eval.enabled=false eval.tasks=[val_bpb]
            train.checkpoint.every_fraction=null train.checkpoint.every_steps=6 train.checkpoint.keep_last=10
            train.validation.every_fraction=0.5 train.validation.batches=2 train.log_every=1)
        R_KILL_AFTER=10
    else
        ACC_SINGLE=accelerate_configs/single_gpu.yaml ACC_DDP=accelerate_configs/ddp.yaml
        ACC_FSDP=accelerate_configs/fsdp.yaml
        TINY_SETS=(train.compile=true train.precision=bf16-mixed data.mixture.target_bytes=3000000
            tokenizer.sample_bytes=2000000 train.tokens=819200 eval.limit=50 data.workers=8)
        E_SETS=("${SHAPE_135M[@]}" train.micro_batch_size=16 train.global_batch_tokens=32768
            train.tokens=null train.steps=200 train.compile=true train.precision=bf16-mixed
            train.checkpoint.every_fraction=0.5 train.validation.every_fraction=0.5 train.validation.batches=2
            eval.every_fraction=0.5 eval.limit=50 train.log_every=10)
        # eager (3 x compile would eat the budget), 8k-token steps (~50-100 ms on an H100) so the kill lands mid-run
        R_SETS=("${SHAPE_135M[@]}" train.micro_batch_size=4 train.global_batch_tokens=8192
            train.tokens=null train.steps=60 train.compile=false train.precision=bf16-mixed eval.enabled=false
            train.checkpoint.every_fraction=null train.checkpoint.every_steps=20 train.checkpoint.keep_last=10
            train.validation.every_fraction=0.5 train.validation.batches=2 train.log_every=1)
        R_KILL_AFTER=23
    fi
}

launch() {  # launch CONFIG OUTDIR pretrain-args... : accelerate launch, one process
    local cfg="$1"; shift
    echo "+ accelerate launch --config_file $cfg --num_processes 1 -m pretrain $*"
    "$PY" -m accelerate.commands.launch --config_file "$cfg" --num_processes 1 -m pretrain "$@"
}

# ddp, fsdp and resume share DATA_DIR (same data/tokenizer/seq keys): a stage that is current is skipped
prepare_data() {  # prepare_data DATA_DIR RUN_DIR sets... : data stages once in DATA_DIR, copied into RUN_DIR
    local data="$1" run="$2"; shift 2
    local args; mapfile -t args < <(sets "$@")
    local stage
    for stage in curate tokenizer pack; do
        echo "+ pretrain $stage (in $data)"
        "$PY" -m pretrain "$stage" recipes/tiny/config.yaml --output-dir "$data" "${args[@]}" || return 1
    done
    mkdir -p "$run"
    local item
    for item in mix tokenizer tokens curation_report.json; do
        [ -e "$data/$item" ] && [ ! -e "$run/$item" ] && cp -r "$data/$item" "$run/$item"
    done
    return 0
}

metrics_line() {  # metrics_line RUN_DIR -> one line: steps, loss, tokens/s, MFU, memory, val, eval
    "$PY" - "$1" <<'PY'
import json, math, statistics, sys
from pathlib import Path
run = Path(sys.argv[1]); recs = []
for line in (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []:
    try: recs.append(json.loads(line))
    except ValueError: pass
steps = [r for r in recs if "loss" in r and "event" not in r]
if not steps:
    print("no step records"); sys.exit(0)
start = next((r for r in recs if r.get("event") == "start"), {})
tail = steps[len(steps) // 2:] or steps     # second half: compile and warm-up are behind
med = lambda k: statistics.median([r[k] for r in tail if r.get(k) is not None] or [float("nan")])
finite = all(math.isfinite(r["loss"]) for r in steps)
val = [r for r in recs if r.get("val/loss") is not None]
ev = {k: v for r in recs for k, v in r.items()
      if k.startswith("eval/") and k.rsplit("/", 1)[-1] in ("bits_per_byte", "acc", "acc_norm")}
out = [f"steps={steps[-1]['step']}", f"loss {steps[0]['loss']:.3f}->{steps[-1]['loss']:.3f}",
       f"tok/s={med('tokens_per_s'):,.0f}", f"mfu={med('mfu'):.3f}" if tail[-1].get("mfu") is not None else "mfu=n/a",
       f"mem_gb={max((r.get('mem_gb') or 0) for r in steps):.1f}", f"step_s={med('step_time_s'):.3f}",
       f"params={start.get('params', 0)/1e6:.1f}M", f"device={start.get('device', '?')}"]
if val: out.append(f"val_loss={val[-1]['val/loss']:.3f}")
if ev: out.append(" ".join(f"{k}={v:.3f}" for k, v in list(ev.items())[:3] if isinstance(v, (int, float))))
if not finite: out.append("NON-FINITE LOSS")
print(" ".join(out))
sys.exit(0 if finite else 3)
PY
}

# ----------------------------------------------------------------------------------------- steps
step_setup() {
    local rc=0
    check() {
        "$PY" - <<'PY'
import importlib, sys
need = ["torch", "transformers", "accelerate", "datasets", "tokenizers", "tiktoken", "evaluate", "lm_eval",
        "peft", "safetensors", "huggingface_hub", "pydantic", "yaml", "jinja2", "numpy", "tqdm", "matplotlib",
        "datatrove", "xxhash", "zstandard", "pyarrow", "pytest", "pretrain", "pretrain.cli", "pretrain.train.loop"]
optional = ["liger_kernel", "spacy", "flash_attn", "tensorboard"]
missing = []
for name in need + optional:
    try:
        mod = importlib.import_module(name)
        ver = getattr(mod, "__version__", "")
        print(f"  ok       {name} {ver} ({getattr(mod, '__file__', '')})")
    except Exception as exc:  # noqa: BLE001 - any import failure is a finding
        print(f"  {'MISSING' if name in need else 'optional'} {name}: {type(exc).__name__}: {exc}")
        if name in need:
            missing.append(name)
if missing:
    print("missing: " + " ".join(missing))
sys.exit(1 if missing else 0)
PY
    }
    local first
    if first=$(check 2>&1) && "$PY" -c "import pretrain,sys; sys.exit(0 if pretrain.__file__.startswith('$REPO/src') else 1)"; then
        echo "everything imports and pretrain comes from $REPO/src: nothing to install"
        echo "$first"
        echo "DETAIL all imports ok (already installed)" >&3
        return 0
    fi
    if compgen -G "$REPO/.whl/*.whl" >/dev/null; then
        echo "+ pip install --no-index --no-deps --target $SITE .whl/*.whl ($(ls "$REPO"/.whl/*.whl | wc -l) wheels)"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$REPO"/.whl/*.whl || echo "wheel install failed (continuing)"
        set_pythonpath
    else
        echo "no .whl/ folder: using the image's packages only"
    fi
    echo "+ pip install --no-deps --no-index --no-build-isolation -e ."
    "$PY" -m pip install -q --no-deps --no-index --no-build-isolation -e "$REPO" \
        || echo "editable install failed: PYTHONPATH=$REPO/src is used instead (python -m pretrain)"
    echo "+ import check (PYTHONPATH=$PYTHONPATH)"
    local report missing
    report=$(check 2>&1) || rc=1
    echo "$report"
    echo "+ pip check (informational: requirement conflicts among installed packages)"
    "$PY" -m pip check 2>&1 | head -40
    missing=$(echo "$report" | sed -n 's/^missing: //p')
    if [ -n "$missing" ]; then
        echo "DETAIL missing: $missing — carry wheels for them in .whl/ (bench/README.md, GPU)" >&3
    else
        echo "DETAIL all imports ok" >&3
    fi
    return $rc
}

step_info() {
    command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi: not found"
    echo; nproc; free -g 2>/dev/null | head -2; df -h "$REPO" /tmp 2>/dev/null
    "$PY" - <<'PY' 3>&-
import importlib, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cudnn", torch.backends.cudnn.version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", torch.cuda.get_device_name(0), f"cc {p.major}.{p.minor}", f"{p.total_memory / 2**30:.1f} GiB",
          f"{p.multi_processor_count} SMs", "bf16", torch.cuda.is_bf16_supported())
for name in ["triton", "transformers", "accelerate", "tokenizers", "datasets", "lm_eval", "liger_kernel", "flash_attn"]:
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name}: {type(exc).__name__}")
from pretrain.scaling.flops import device_peak_flops
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
print("planning peak FLOP/s for this device:", device_peak_flops(name))
PY
    "$PY" -c "
import torch
if torch.cuda.is_available():
    print(f'{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}')
else:
    print(f'no CUDA (CPU rehearsal), torch {torch.__version__}')" | sed 's/^/DETAIL /' >&3
}

step_tests() {
    local extra=()
    if [ "${REHEARSAL:-0}" = 1 ] && [ "${GPU_CHECK_TESTS_ON_CPU:-0}" = 1 ]; then
        export PRETRAIN_GPU_TESTS_ON_CPU=1
    fi
    echo "+ pytest -m gpu tests/gpu"
    "$PY" -m pytest -m gpu tests/gpu -p no:cacheprovider -rs -v "${extra[@]}" \
        --junitxml "$OUT_DIR/tests.xml"
    local rc=$?
    "$PY" - "$OUT_DIR/tests.xml" <<'PY' >&3 || true
import sys, xml.etree.ElementTree as ET
try:
    s = ET.parse(sys.argv[1]).getroot()
    s = s if s.tag == "testsuite" else s.find("testsuite")
    t, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
    print(f"DETAIL {t - f - e - k} passed, {f + e} failed, {k} skipped ({float(s.get('time', 0)):.0f}s)")
except Exception as exc:  # noqa: BLE001
    print(f"DETAIL no junit xml ({exc})")
PY
    return $rc
}

step_tiny() {
    local run="$WORK/tiny" args
    mapfile -t args < <(sets "${TINY_SETS[@]}")
    launch "$ACC_SINGLE" run recipes/tiny/config.yaml --output-dir "$run" "${args[@]}" || return 1
    [ -d "$run/final" ] || { echo "no final/"; return 1; }
    metrics_line "$run" | sed 's/^/DETAIL /' >&3
}

step_train135() {  # step_train135 NAME CONFIG [KEY=VALUE...]
    local name="$1" cfg="$2" run="$WORK/$1" args
    shift 2
    prepare_data "$WORK/data" "$run" "${E_SETS[@]}" || return 1
    mapfile -t args < <(sets "${E_SETS[@]}" "$@")
    launch "$cfg" run recipes/tiny/config.yaml --output-dir "$run" "${args[@]}" || { metrics_line "$run" | sed 's/^/DETAIL failed after: /' >&3; return 1; }
    [ -d "$run/final" ] || { echo "no final/"; return 1; }
    metrics_line "$run" | sed 's/^/DETAIL /' >&3
}

step_resume() {
    local base="$WORK/resume" args
    prepare_data "$WORK/data" "$base/data" "${R_SETS[@]}" || return 1
    mapfile -t args < <(sets "${R_SETS[@]}")
    "$PY" - "$base" "$ACC_SINGLE" "$R_KILL_AFTER" "${REHEARSAL:-0}" "${args[@]}" <<'PY'
"""Reference run(s), a run killed with SIGKILL after a checkpoint, `--resume auto`: compare per-step losses."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

base, cfg, kill_after, rehearsal, sets = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5:]
py = sys.executable
status = os.fdopen(3, "w", buffering=1)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: run the finally below (kills the victim)

def cmd(out, resume):
    return [py, "-m", "accelerate.commands.launch", "--config_file", cfg, "--num_processes", "1", "-m", "pretrain",
            "train", "recipes/tiny/config.yaml", "--output-dir", str(out), "--resume", resume, *sets]

def fresh(name):
    out = base / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for item in ("mix", "tokenizer", "tokens", "curation_report.json"):
        src = base / "data" / item
        if src.is_dir(): shutil.copytree(src, out / item)
        elif src.exists(): shutil.copy2(src, out / item)
    return out

def records(out):
    recs = []
    p = out / "metrics.jsonl"
    for line in (p.read_text().splitlines() if p.exists() else []):
        try: recs.append(json.loads(line))
        except ValueError: pass
    return recs

def losses(out):
    return [(r["step"], r["loss"]) for r in records(out) if "loss" in r and "event" not in r]

def run(out, resume, log):
    t = time.monotonic()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd(out, resume), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    print(f"{Path(log).stem}: rc={rc} in {time.monotonic() - t:.0f}s, {len(losses(out))} steps logged", flush=True)
    return rc

def rel(a, b):
    return max((abs(x[1] - y[1]) / max(abs(y[1]), 1e-12) for x, y in zip(a, b)), default=0.0)

ref = fresh("reference")
if run(ref, "never", base / "reference.log") != 0:
    print(open(base / "reference.log").read()[-4000:]); status.write("DETAIL FAIL: reference run failed\n"); sys.exit(1)
noise = None
if not rehearsal:  # GPU kernels need not be bitwise deterministic: measure run-to-run noise with a second reference
    ref2 = fresh("reference2")
    if run(ref2, "never", base / "reference2.log") == 0:
        noise = rel(losses(ref2), losses(ref))
        print(f"run-to-run: identical={losses(ref2) == losses(ref)} max rel diff {noise:.3g}")

victim = fresh("killed")
t0 = time.monotonic()
with open(base / "killed.log", "w") as fh:
    proc = subprocess.Popen(cmd(victim, "auto"), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
killed_at, ckpt = None, None
try:
    while proc.poll() is None and time.monotonic() - t0 < 600:
        recs = records(victim)
        ckpts = [r["step"] for r in recs if r.get("event") == "checkpoint"]
        done = [r["step"] for r in recs if "loss" in r and "event" not in r]
        if ckpts and done and done[-1] >= kill_after:
            killed_at, ckpt = done[-1], ckpts[-1]
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
finally:
    if proc.poll() is None:
        try: os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError: pass
    proc.wait()
print(f"killed: after step {killed_at} (last checkpoint event: step {ckpt}); final/ exists: {(victim / 'final').exists()}")
if killed_at is None or (victim / "final").exists():
    print(open(base / "killed.log").read()[-4000:])
    status.write("DETAIL FAIL: the run ended before the kill (make it longer)\n"); sys.exit(1)
time.sleep(1)
rc = run(victim, "auto", base / "resumed.log")
log = open(base / "resumed.log").read()
resumed_msg = "resumed from" in log
print(log[-2500:])
a, b = losses(victim), losses(ref)
steps_ok = [s for s, _ in a] == [s for s, _ in b]
exact = a == b
d = rel(a, b)
if rc == 0 and steps_ok and exact:
    verdict = f"PASS exact: {len(a)} per-step losses identical (killed after step {killed_at}, resumed from checkpoint {ckpt})"
elif rc == 0 and steps_ok and noise is not None and d <= 2 * noise:
    verdict = (f"PASS within run-to-run noise: max rel diff {d:.3g} vs {noise:.3g} between two uninterrupted runs "
               f"(killed after step {killed_at}, checkpoint {ckpt})")
else:
    verdict = (f"FAIL: rc={rc} 'resumed from' logged={resumed_msg} same steps={steps_ok} max rel diff {d:.3g}"
               + (f" (run-to-run noise {noise:.3g})" if noise is not None else ""))
for (s, x), (_, y) in list(zip(a, b))[: 3] + list(zip(a, b))[max(0, (ckpt or 0) - 1):(ckpt or 0) + 3]:
    print(f"  step {s}: resumed {x!r} reference {y!r}")
print(verdict)
status.write(f"DETAIL {verdict}\n")
sys.exit(0 if verdict.startswith("PASS") else 1)
PY
}

bench_one() {  # bench_one TAG TIMEOUT bench-args... -> OUT_DIR/bench-TAG.json (retried with half the micro batch on OOM)
    local tag="$1" t="$2"; shift 2
    local log="$OUT_DIR/bench-$tag.log" left=$(( ${STEP_DEADLINE:-9999999999} - $(date +%s) ))
    [ "$left" -lt "$t" ] && t=$left
    if [ "$t" -lt 20 ]; then echo "$tag: skipped, the step's budget is spent" | tee "$log"; return 1; fi
    echo "+ python bench/train_throughput.py $* (timeout ${t}s)"
    timeout -k 10 "$t" "$PY" bench/train_throughput.py "$@" >"$log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ] && grep -qi "out of memory" "$log"; then
        local mbs
        mbs=$("$PY" -c "
import sys; sys.path.insert(0, 'src')
from pretrain.config import load_recipe
shape = sys.argv[1]
r = load_recipe(f'recipes/{shape}/config.yaml', overrides=['accelerate_config=null'], check_files=False)
print(max(1, r.train.micro_batch_size // 2))" "$BENCH_SHAPE" 2>/dev/null)
        echo "  OOM: retrying with train.micro_batch_size=$mbs"
        left=$(( ${STEP_DEADLINE:-9999999999} - $(date +%s) )); [ "$left" -lt "$t" ] && t=$left
        timeout -k 10 "$t" "$PY" bench/train_throughput.py "$@" --set "train.micro_batch_size=$mbs" >"$log" 2>&1
        rc=$?
    fi
    tail -n 3 "$log"
    [ $rc -eq 0 ] && tail -n 1 "$log" >"$OUT_DIR/bench-$tag.json"
    return $rc
}

merge_bench() {  # merge_bench OUT.json TAG... -> one JSON with every row (each row tagged)
    local out="$1"; shift
    "$PY" - "$OUT_DIR" "$out" "$@" <<'PY'
import json, sys
from pathlib import Path
d, out, tags = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
rows, device = [], None
for tag in tags:
    p = d / f"bench-{tag}.json"
    if not p.exists():
        rows.append({"tag": tag, "error": "failed (see bench-%s.log)" % tag}); continue
    j = json.loads(p.read_text()); device = j.get("device", device)
    rows += [{"tag": tag, **r} for r in j["results"]]
json.dump({"bench": "train_throughput", "device": device, "results": rows}, open(out, "w"), indent=1)
parts = []
for r in rows:
    if "error" in r: parts.append(f"{r['tag']}: FAILED")
    else:
        mfu = f" mfu {r['ours_mfu']:.3f}" if r.get("ours_mfu") is not None else ""
        parts.append(f"{r['tag']}: {r['ours_tok_s']:,.0f} tok/s{mfu} ({r['speedup']}x HF)")
print("DETAIL " + "; ".join(parts))
PY
}

step_bench() {
    local rc=0 shape tags=()
    local tiny=() t=170
    [ "${REHEARSAL:-0}" = 1 ] && tiny=(--device cpu --tiny --iters 2) && t=120
    local shapes=(smollm2-135m smollm2-360m llama-1b)
    [ "${REHEARSAL:-0}" = 1 ] && shapes=(smollm2-135m)
    for shape in "${shapes[@]}"; do
        BENCH_SHAPE=$shape bench_one "$shape" "$t" --shapes "$shape" "${tiny[@]}" || rc=1
        tags+=("$shape")
    done
    merge_bench "$OUT_DIR/bench.json" "${tags[@]}" >&3
    cat "$OUT_DIR/bench.json"
    return $rc
}

step_levers() {
    local rc=0 tags=() tiny=() t=140
    [ "${REHEARSAL:-0}" = 1 ] && tiny=(--device cpu --tiny --iters 2) && t=120
    local -A lever=(
        [recipe]=""                                 # the 135M recipe as is: compile, bf16-mixed, fused AdamW
        [no-compile]="train.compile=false"
        [bf16-true]="train.precision=bf16-true"
        [foreach-adamw]="train.optimizer.fused=false"
        [liger]="train.liger_kernels=true"
    )
    local name
    for name in recipe no-compile bf16-true foreach-adamw liger; do
        [ "${REHEARSAL:-0}" = 1 ] && [ "$name" = recipe ] && continue   # same as the bench step there
        if [ "$name" = liger ] && ! "$PY" -c "import liger_kernel" 2>/dev/null; then
            echo "liger: liger_kernel not importable (carry its wheel in .whl/) — skipped"; continue
        fi
        [ "$name" = recipe ] && [ -s "$OUT_DIR/bench-smollm2-135m.json" ] && {
            cp "$OUT_DIR/bench-smollm2-135m.json" "$OUT_DIR/bench-lever-recipe.json"; tags+=(lever-recipe); continue; }
        local extra=()
        [ -n "${lever[$name]}" ] && extra=(--set "${lever[$name]}")
        BENCH_SHAPE=smollm2-135m bench_one "lever-$name" "$t" --shapes smollm2-135m "${tiny[@]}" "${extra[@]}" || rc=1
        tags+=("lever-$name")
    done
    merge_bench "$OUT_DIR/levers.json" "${tags[@]}" >&3
    cat "$OUT_DIR/levers.json"
    return $rc
}

# ----------------------------------------------------------------------------------------- driver
if [ "${1:-}" = "__step" ]; then   # internal: one step in its own process (so `timeout` can end it)
    set_pythonpath; mode_vars
    case "$2" in
        setup) step_setup ;; info) step_info ;; tests) step_tests ;; tiny) step_tiny ;;
        ddp) step_train135 ddp "$ACC_DDP" ;; fsdp) step_train135 fsdp "$ACC_FSDP" train.optimizer.name=adamw ;;  # Muon (the tiny recipe's) needs whole matrices
        resume) step_resume ;; bench) step_bench ;; levers) step_levers ;;
        *) echo "unknown step $2"; exit 2 ;;
    esac
    exit $?
fi

if [ "${1:-}" = "--print-sets" ]; then   # --print-sets gpu|cpu tiny|e|resume: the --set list a step uses
    REHEARSAL=$([ "${2:-gpu}" = cpu ] && echo 1 || echo 0); mode_vars
    case "${3:-e}" in tiny) sets "${TINY_SETS[@]}" ;; e) sets "${E_SETS[@]}" ;; resume) sets "${R_SETS[@]}" ;; esac
    exit 0
fi
if [ "${1:-}" = "--fetch-wheels" ]; then fetch_wheels "${2:-}"; exit $?; fi
if [ $# -lt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,/^set -u/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0
fi

OUT_DIR="$1"; shift
REHEARSAL="${GPU_CHECK_CPU_REHEARSAL:-0}"
STEPS=()
for a in "$@"; do
    case "$a" in
        --cpu-rehearsal) REHEARSAL=1 ;;
        setup|info|tests|tiny|ddp|fsdp|resume|bench|levers) STEPS+=("$a") ;;
        *) echo "unknown step or flag: $a (steps: ${ALL_STEPS[*]})" >&2; exit 2 ;;
    esac
done
[ ${#STEPS[@]} -eq 0 ] && STEPS=("${ALL_STEPS[@]}")
mkdir -p "$OUT_DIR"; OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WORK="${GPU_CHECK_WORK:-$OUT_DIR/work}"; mkdir -p "$WORK"; WORK="$(cd "$WORK" && pwd)"
BUDGET="${GPU_CHECK_BUDGET_S:-1500}"
set_pythonpath
if [ "$REHEARSAL" = 1 ]; then
    export CUDA_VISIBLE_DEVICES=""     # a forced rehearsal on a GPU machine stays on the CPU
elif ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    REHEARSAL=1; echo "torch sees no CUDA device: CPU rehearsal (cpu.yaml, CPU-sized shapes and step counts)"
fi
export OUT_DIR WORK REHEARSAL PY
declare -A BUDGETS=([setup]=180 [info]=60 [tests]=360 [tiny]=300 [ddp]=330 [fsdp]=330 [resume]=330 [bench]=540 [levers]=540)
SUMMARY="$OUT_DIR/summary.txt"
{
    echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) host=$(hostname) mode=$([ "$REHEARSAL" = 1 ] && echo cpu-rehearsal || echo gpu)" \
        "steps=${STEPS[*]} budget=${BUDGET}s rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo n/a)"
} >>"$SUMMARY"

export_results() {
    [ -n "${GPU_CHECK_EXPORT:-}" ] || return 0
    mkdir -p "$GPU_CHECK_EXPORT"
    cp "$SUMMARY" "$GPU_CHECK_EXPORT/summary.txt"
    tar czf "$GPU_CHECK_EXPORT/gpu_check_logs.tgz" -C "$OUT_DIR" --exclude=./work --exclude="./$(basename "$WORK")" . 2>/dev/null || true
}

T0=$(date +%s)
for step in "${STEPS[@]}"; do
    # setup is cheap when everything imports: run it first in any split invocation of a fresh machine
    if [ "$step" != setup ] && [ -z "${SETUP_DONE:-}" ] && ! printf '%s\n' "${STEPS[@]}" | grep -qx setup; then
        if ! "$PY" -c "import pretrain.cli, transformers, lm_eval, datatrove, pydantic" >/dev/null 2>&1; then
            echo "imports fail: running setup first"
            timeout -k 10 180 bash "$SELF" __step setup >"$OUT_DIR/setup.log" 2>&1 3>/dev/null
            echo "setup    (auto) rc=$? see setup.log" >>"$SUMMARY"; set_pythonpath
        fi
        SETUP_DONE=1
    fi
    left=$(( BUDGET - ($(date +%s) - T0) ))
    t=${BUDGETS[$step]}; [ "$left" -lt "$t" ] && t=$left
    if [ "$t" -lt 30 ]; then
        printf '%-7s SKIP     %5ss  budget spent (GPU_CHECK_BUDGET_S=%s)\n' "$step" 0 "$BUDGET" | tee -a "$SUMMARY"
        export_results; continue
    fi
    echo "=== $step (timeout ${t}s) -> $OUT_DIR/$step.log"
    s0=$(date +%s)
    detail_file="$OUT_DIR/.$step.detail"; : >"$detail_file"
    STEP_DEADLINE=$(( s0 + t - 15 )) timeout -k 20 "$t" bash "$SELF" __step "$step" >"$OUT_DIR/$step.log" 2>&1 3>"$detail_file"
    rc=$?
    dt=$(( $(date +%s) - s0 ))
    case $rc in
        0) st=PASS ;; 124|137) st=TIMEOUT ;; *) st="FAIL($rc)" ;;
    esac
    detail=$(sed -n 's/^DETAIL //p' "$detail_file" | tr '\n' ' ' | sed 's/ *$//')
    rm -f "$detail_file"
    [ "$step" = setup ] && set_pythonpath
    printf '%-7s %-8s %5ss  %s\n' "$step" "$st" "$dt" "$detail" | tee -a "$SUMMARY"
    [ "$st" != PASS ] && tail -n 15 "$OUT_DIR/$step.log" | sed 's/^/    | /'
    export_results
done
echo "total $(( $(date +%s) - T0 ))s" | tee -a "$SUMMARY"
export_results
echo "summary: $SUMMARY"
