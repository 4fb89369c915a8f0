# Shared body of the ModelZoo entry points (test/train_{full,performance}_{1,8}p.sh); sourced, not run.
#
# Why: Ascend users run these scripts with ModelZoo's flags and read the summary ModelZoo prints. Each script
# only turns those flags into one `python -m launcher` call; planning, rank tables, supervision, logs
# (output/<device>/train_<device>.log) and the ModelZoo summary (output/<device>/<CaseName>.log) are the
# launcher's. The caller sets MODE (full|performance) and PLACES (1|8) and calls modelzoo_main "$@".

modelzoo_usage() {
    echo "usage: bash test/$(basename "$0") --data_path=DIR [--model=mobilenetv3_large|mobilenetv3_small|shufflenetv1|smoke]" \
         "[--batch=N] [--epochs=N] [--learning_rate=LR] [--precision_mode=MODE] [--max_step=N]" \
         "[--image_size=PX] [--augment=imagenet|light|none] [--save_interval=N] [--rank_size=N]" \
         "[--network=NAME] [--output_dir=DIR]" \
         "[--iterations_per_loop=N] [--loss_scale=dynamic|off|N] [--modeldir=DIR] [--profiling=True]" \
         "[--over_dump=True] [--data_dump_flag=True] [--data_dump_step=STEPS] [--bind_core=1]" \
         "[any other trainer option, e.g. --label_offset=1 --no_eval (python -m train --help)]"
}

modelzoo_fail() {
    echo "$(basename "$0"): error: $1" >&2
    modelzoo_usage >&2
    exit 2
}

modelzoo_main() {
    local data_path="" model="mobilenetv3_large" batch="64" epochs="" learning_rate="" image_size=""
    local precision_mode="allow_mix_precision" max_step="" save_interval="" network="" output_dir="" augment=""
    local rank_size="8" para key value bare
    local -a further=()
    # ModelZoo's NPU flags: loop sinking, loss scaling and the debugging switches (NPU-only ones say so)
    local iterations_per_loop="" loss_scale="" modeldir="" profiling="" over_dump="" data_dump_flag=""
    local data_dump_step="" bind_core=""
    if [ "$MODE" = performance ]; then
        max_step="1000"
    fi
    while [ $# -gt 0 ]; do
        para="$1"
        shift
        case "$para" in
            -h|--help) modelzoo_usage; exit 0 ;;
            --*=*) key="${para%%=*}"; value="${para#*=}"; bare="" ;;
            --*)
                # `--flag value` as well as ModelZoo's `--flag=value`; a trainer switch such as --no_eval
                # has no value
                key="$para"; value=""; bare=1
                if [ $# -gt 0 ] && [[ "$1" != --* ]]; then value="$1"; bare=""; shift; fi ;;
            *) modelzoo_fail "unexpected argument '$para'; flags look like --data_path=DIR" ;;
        esac
        case "$key" in
            --data_path|--model|--batch|--batch_size|--epochs|--learning_rate|--precision_mode|--max_step|\
            --max_train_step|--image_size|--save_interval|--rank_size|--network|--output_dir|\
            --iterations_per_loop|--loss_scale|--modeldir|--model_dir|--profiling|--over_dump|--data_dump_flag|\
            --data_dump_step|--bind_core)
                [ -n "$value" ] || modelzoo_fail "$key needs a value, e.g. $key=VALUE" ;;
        esac
        case "$key" in
            --data_path) data_path="$value" ;;
            --model) model="$value" ;;
            --batch|--batch_size) batch="$value" ;;
            --epochs) epochs="$value" ;;
            --learning_rate) learning_rate="$value" ;;
            --precision_mode) precision_mode="$value" ;;
            --max_step|--max_train_step) max_step="$value" ;;
            --image_size) image_size="$value" ;;
            --augment) augment="$value" ;;
            --save_interval) save_interval="$value" ;;
            --rank_size) rank_size="$value" ;;
            --network) network="$value" ;;
            --output_dir) output_dir="$value" ;;
            --iterations_per_loop) iterations_per_loop="$value" ;;
            --loss_scale) loss_scale="$value" ;;
            --modeldir|--model_dir) modeldir="$value" ;;
            --profiling) profiling="$value" ;;
            --over_dump) over_dump="$value" ;;
            --data_dump_flag) data_dump_flag="$value" ;;
            --data_dump_step) data_dump_step="$value" ;;
            --bind_core) bind_core="$value" ;;  # accepted: the launcher always binds each rank's cores
            *)
                # any other option is the trainer's: passed on; the launcher checks it with the trainer's
                # own parser before anything starts
                if [ -n "$bare" ]; then further+=("$key"); else further+=("$key=$value"); fi ;;
        esac
    done
    [ -n "$data_path" ] || modelzoo_fail "--data_path=DIR is required (an image folder with train/ and validation/, \
a TFRecord folder, or 'synthetic')"
    local name
    for name in batch epochs rank_size max_step image_size save_interval iterations_per_loop; do
        value="${!name}"
        if [ -n "$value" ] && ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
            modelzoo_fail "--$name must be a positive whole number, not '$value'"
        fi
    done

    # Paths are the caller's; the launcher runs from the repository root (found from this script's place).
    case "$data_path" in /*|synthetic|synthetic:*) ;; *) data_path="$PWD/$data_path" ;; esac
    if [ -z "$output_dir" ]; then
        output_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/output"
    else
        case "$output_dir" in /*) ;; *) output_dir="$PWD/$output_dir" ;; esac
    fi
    cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

    local python=python3
    if [ -n "${PYTHON:-}" ]; then
        python="$PYTHON"
    elif [ -x .venv/bin/python ]; then
        python=.venv/bin/python
    fi

    # 1p: the device ModelZoo's env.sh names (ASCEND_DEVICE_ID, default 0); 8p: devices 0..rank_size-1.
    # A range means "these devices" on Ascend/GPU and "one worker per item" on CPU, so it fits every backend.
    local devices case_suffix
    if [ "$PLACES" = 1 ]; then
        local device="${ASCEND_DEVICE_ID:-0}"
        [[ "$device" =~ ^[0-9]+$ ]] || modelzoo_fail "ASCEND_DEVICE_ID must be a device number, not '$device'"
        devices="$device-$device"
        rank_size=1
    else
        devices="0-$((rank_size - 1))"
    fi
    if [ "$MODE" = performance ]; then case_suffix=perf; else case_suffix=acc; fi

    # The trainer's flags; the launcher checks them (and the data) with the trainer's own checks before
    # anything starts.
    local -a trainer=("--precision_mode=$precision_mode")
    [ -z "$learning_rate" ] || trainer+=("--learning_rate=$learning_rate" "--lr_scaling=none")
    [ -z "$image_size" ] || trainer+=("--image_size=$image_size")
    [ -z "$augment" ] || trainer+=("--augment=$augment")
    [ -z "$save_interval" ] || trainer+=("--save_interval=$save_interval")
    [ -z "$max_step" ] || trainer+=("--max_step=$max_step")
    [ -z "$iterations_per_loop" ] || trainer+=("--iterations_per_loop=$iterations_per_loop")
    [ -z "$loss_scale" ] || trainer+=("--loss_scale=$loss_scale")
    [ -z "$profiling" ] || trainer+=("--profiling=$profiling")
    [ -z "$over_dump" ] || trainer+=("--over_dump=$over_dump")
    [ -z "$data_dump_flag" ] || trainer+=("--data_dump_flag=$data_dump_flag")
    [ -z "$data_dump_step" ] || trainer+=("--data_dump_step=$data_dump_step")
    if [ -n "$modeldir" ]; then
        case "$modeldir" in /*) ;; *) modeldir="$PWD/$modeldir" ;; esac
        trainer+=("--modeldir=$modeldir")
    fi
    trainer+=("${further[@]}")

    local backend
    backend="$("$python" -c 'from launcher import facts, plan; print(plan.resolve_backend("auto", facts.gather()))')" \
        || { echo "$(basename "$0"): error: cannot run the launcher with $python; set PYTHON=/path/to/python" >&2
             exit 2; }
    # ModelZoo's Network name (the CaseName starts with it), from the model and its --model_option flags
    [ -n "$network" ] || network="$("$python" -m launcher.modelzoo "$model" "${further[@]}")" || exit 2
    if [ "$backend" = cpu ]; then
        echo "$(basename "$0"): no Ascend (or CUDA) device on this host: running on CPU with $rank_size worker(s)"
    else
        echo "$(basename "$0"): running on $backend devices $devices"
    fi
    if [ "$backend" != npu ] && [ -n "$profiling$over_dump$data_dump_flag$data_dump_step" ]; then
        echo "$(basename "$0"): --profiling, --over_dump and --data_dump_* are NPU-only: ignored on $backend"
    fi
    [ -z "$bind_core" ] || echo "$(basename "$0"): --bind_core: each rank is bound to its share of the cores (always on)"
    if [ "$MODE" = performance ] && [ "$backend" = npu ] && [ -z "$iterations_per_loop" ]; then
        # ModelZoo's loop sinking: the device runs 100 steps per sess.run (the run is whole loops of 100)
        trainer+=("--iterations_per_loop=100")
    fi

    local -a args=(-m launcher --devices "$devices" --model "$model" --data-path "$data_path"
                   --batch-size "$batch" --network "$network" --case "$case_suffix" --output-dir "$output_dir"
                   "${trainer[@]}")
    local scratch=""
    if [ "$MODE" = performance ]; then
        # A performance run measures fresh steps: it never resumes, neither evaluates nor exports (as
        # ModelZoo's performance scripts), and keeps its checkpoints in a directory of its own that is
        # removed when it ends.
        scratch="$(mktemp -d "${TMPDIR:-/tmp}/modelzoo_perf_ckpt.XXXXXX")" || exit 1
        trap 'rm -rf "$scratch"' EXIT
        args+=("--resume" "never" "--no-eval" "--no-export")
        [ -n "$modeldir" ] || args+=("--checkpoint_dir=$scratch")
        [ -z "$epochs" ] || args+=(--epochs "$epochs")      # --max_step still bounds the run
    else
        args+=(--epochs "${epochs:-100}")
    fi

    "$python" "${args[@]}"
    local code=$?
    if [ "$code" -eq 0 ] && [ -f "$output_dir/summary.json" ]; then
        "$python" -c 'import json, sys
from launcher.report import modelzoo_text
sys.stdout.write(modelzoo_text(json.load(open(sys.argv[1]))))' "$output_dir/summary.json"
    fi
    exit "$code"
}
