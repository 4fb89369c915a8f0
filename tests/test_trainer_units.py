"""The trainer's pure decisions: flags and ModelZoo aliases, placement from the launcher's environment,
run length, the LR schedule, the partial-restore plan, resume checks, and the one-line user errors."""
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

from train import checkpoints, config, optim, trainer
from train.errors import TrainError


def test_modelzoo_names_are_aliases_of_the_same_settings():
    ours = config.parse_flags(["--model", "m", "--data-path", "/d", "--batch-size", "8", "--epochs", "3",
                               "--learning-rate", "0.2", "--max-steps", "50", "--save-interval", "10",
                               "--precision-mode", "force_fp32"])
    zoo = config.parse_flags(["--model", "m", "--data_path", "/d", "--batch", "8", "--epochs", "3",
                              "--learning_rate", "0.2", "--max_step", "50", "--save_interval", "10",
                              "--precision_mode", "force_fp32"])
    assert vars(ours) == vars(zoo)
    assert (zoo.data_path, zoo.batch_size, zoo.learning_rate, zoo.max_steps, zoo.save_every_steps,
            zoo.precision_mode) == ("/d", 8, 0.2, 50, 10, "force_fp32")


def test_defaults_resume_on_cosine_momentum_eval_export():
    args = config.parse_flags(["--model", "m"])
    assert (args.resume, args.lr_schedule, args.optimizer, args.eval, args.export) == \
        ("auto", "cosine", "momentum", True, True)
    assert config.parse_flags(["--model", "m", "--no-resume"]).resume == "never"      # the old alias
    assert config.parse_flags(["--model", "m", "--resume", "never"]).resume == "never"
    assert config.parse_flags(["--model", "m", "--resume"]).resume == "auto"


@pytest.mark.parametrize("argv, words", [
    ([], "--model is required"),
    (["--model", "m", "--bogus"], "unrecognized arguments: --bogus"),
    (["--model", "m", "--lr-schedule", "piecewise"], "needs --lr-boundaries"),
    (["--model", "m", "--lr-schedule", "piecewise", "--lr-boundaries", "5,3"], "increasing"),
    (["--model", "m", "--freeze-backbone"], "needs --finetune"),
    (["--model", "m", "--batch-size", "0"], "--batch-size must be positive"),
])
def test_flag_mistakes_name_the_fix(argv, words):
    with pytest.raises(TrainError) as info:
        config.parse_flags(argv)
    assert words in str(info.value)


def test_placement_follows_the_launcher_environment():
    env = {"RANK_ID": "1", "RANK_SIZE": "2", "LAUNCH_BACKEND": "cpu", "LAUNCH_OUTPUT_DIR": "/o",
           "LAUNCH_RANK_DIR": "/o/1", "LAUNCH_CHECKPOINT_DIR": "/o/checkpoints",
           "LAUNCH_METRICS_FILE": "/o/1/metrics.jsonl", "LAUNCH_ERROR_FILE": "/o/1/error.json",
           "LAUNCH_INTRA_OP_THREADS": "1", "LAUNCH_INTER_OP_THREADS": "2", "LAUNCH_RESTART": "3"}
    p = config.placement_from_env(env)
    assert (p.rank, p.size, p.backend_kind, p.metrics_file, p.error_file, p.checkpoint_dir) == \
        (1, 2, "collective", "/o/1/metrics.jsonl", "/o/1/error.json", "/o/checkpoints")
    assert (p.intra_threads, p.inter_threads, p.restart) == (1, 2, 3)
    assert config.placement_from_env({}).backend_kind == "none"
    assert config.placement_from_env({"LAUNCH_BACKEND": "npu"}).backend_kind == "hccl"
    with pytest.raises(TrainError):
        config.placement_from_env({"RANK_ID": "2", "RANK_SIZE": "2"})


def test_main_env_feeds_the_backend_as_well_as_the_placement(monkeypatch):
    """`python -m train`'s main(env=...): the backend reads the given environment, not os.environ."""
    from train import __main__ as train_main
    from train.backends import BackendError
    for name in ("RANK_ID", "RANK_SIZE", "LAUNCH_BACKEND", "LAUNCH_PEERS"):
        monkeypatch.delenv(name, raising=False)
    args = config.parse_flags(["--model", "m"])
    parts = train_main.default_parts(args, {"RANK_ID": "1", "RANK_SIZE": "2", "LAUNCH_BACKEND": "cpu"})
    with pytest.raises(BackendError, match="LAUNCH_PEERS"):
        parts.make_backend(args)
    # a malformed variable is the same one-line error on both readers (it was None in the placement before)
    with pytest.raises(TrainError, match="LAUNCH_COLLECTIVE_TIMEOUT='x' is not a number of seconds"):
        config.placement_from_env({"LAUNCH_COLLECTIVE_TIMEOUT": "x"}, args)
    with pytest.raises(BackendError, match="LAUNCH_COLLECTIVE_TIMEOUT='x' is not a number of seconds"):
        train_main.default_parts(args, {"LAUNCH_COLLECTIVE_TIMEOUT": "x"}).make_backend(args)


def test_run_length_drops_the_remainder_alike_on_every_rank():
    sched = trainer.schedule_plan(train_count=1000, batch_size=32, size=3, epochs=2, max_steps=None)
    assert (sched.global_batch, sched.steps_per_epoch, sched.total_steps) == (96, 10, 20)
    assert trainer.schedule_plan(1000, 32, 3, 2, max_steps=7).total_steps == 7
    with pytest.raises(TrainError) as info:
        trainer.schedule_plan(train_count=50, batch_size=32, size=2, epochs=1, max_steps=None)
    assert "lower --batch-size" in str(info.value)


def _plan(*extra, global_batch=512, steps_per_epoch=10, total=100):
    args = config.parse_flags(["--model", "m", "--learning-rate", "0.1"] + list(extra))
    return optim.lr_plan(args, global_batch, steps_per_epoch, total)


def test_lr_scales_with_the_global_batch_warms_up_and_follows_cosine():
    plan = _plan("--warmup-epochs", "2")
    assert plan.peak == pytest.approx(0.2)  # 0.1 * 512 / 256
    assert plan.warmup_steps == 20
    assert optim.lr_at(plan, 0) == pytest.approx(0.2 / 20)
    assert optim.lr_at(plan, 19) == pytest.approx(0.2)
    assert optim.lr_at(plan, 20) == pytest.approx(0.2)
    assert optim.lr_at(plan, 60) == pytest.approx(0.1)  # half-way through the cosine part
    assert optim.lr_at(plan, 100) == pytest.approx(0.0)
    assert _plan("--lr-scaling", "none").peak == pytest.approx(0.1)


def test_piecewise_multiplies_after_each_boundary():
    plan = _plan("--lr-schedule", "piecewise", "--lr-boundaries", "3,6", "--lr-scaling", "none")
    assert plan.boundaries == [30, 60]
    assert [optim.lr_at(plan, s) for s in (0, 30, 31, 60, 61)] == \
        pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_partial_restore_skips_a_head_with_another_class_count():
    wanted = {"conv/kernel": [3, 3, 3, 8], "classifier/kernel": [8, 2], "classifier/bias": [2], "new": [1]}
    stored = {"conv/kernel": [3, 3, 3, 8], "classifier/kernel": [8, 4], "classifier/bias": [4], "old": [1]}
    take, skipped = checkpoints.plan_partial_restore(wanted, stored)
    assert take == ["conv/kernel"]
    assert sorted(skipped) == ["classifier/bias", "classifier/kernel", "new"]
    assert "shape [8, 4] in checkpoint" in skipped["classifier/kernel"]


def test_the_step_of_a_checkpoint_comes_from_its_name():
    assert checkpoints.step_of("/o/checkpoints/model.ckpt-1200") == 1200
    assert checkpoints.step_of("/o/weird") == 0


def test_resume_refuses_checkpoints_of_another_model():
    checkpoints.check_resumable(None, {"model": "a"})
    checkpoints.check_resumable({"model": "a", "num_classes": 4}, {"model": "a", "num_classes": 4})
    with pytest.raises(TrainError) as info:
        checkpoints.check_resumable({"model": "a", "num_classes": 4}, {"model": "b", "num_classes": 4})
    assert "model a (now b)" in str(info.value)


def test_every_counts_intervals_of_steps():
    assert [s for s in range(1, 13) if trainer.every(s, 4)] == [4, 8, 12]
    assert not any(trainer.every(s, 0) for s in range(1, 5))


def test_a_flag_mistake_is_one_line_exit_2_and_an_error_file(tmp_path):
    error_file = tmp_path / "0" / "error.json"
    env = dict(os.environ, LAUNCH_ERROR_FILE=str(error_file), LAUNCH_OUTPUT_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "train", "--model", "m", "--batch", "x"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0  # one line
    assert "--batch" in proc.stderr and "Traceback" not in proc.stderr
    record = json.loads(error_file.read_text())
    assert record["type"] == "TrainError" and record["rank"] == 0 and "--batch" in record["message"]


@pytest.mark.parametrize("name, kind", [("momentum", "MomentumOptimizer"), ("rmsprop", "RMSPropOptimizer"),
                                        ("adam", "AdamOptimizer")])
def test_each_optimizer_is_a_tf1_optimizer_the_backends_can_wrap(name, kind):
    assert type(optim.make_optimizer(name, 0.1)).__name__ == kind


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [["--warmup-epochs", "2"],
                                      ["--lr-schedule", "piecewise", "--lr-boundaries", "3,6"],
                                      ["--lr-schedule", "constant", "--warmup-epochs", "1"]])
def test_the_graph_learning_rate_is_the_planned_one(schedule):
    from tfcompat import tf
    plan = _plan(*schedule)
    graph = tf.Graph()
    with graph.as_default():
        step = tf.compat.v1.placeholder(tf.int64, [])
        lr = optim.learning_rate_tensor(plan, step)
        with tf.compat.v1.Session(graph=graph) as sess:
            steps = [0, 1, 19, 20, 21, 30, 31, 59, 60, 61, 99, 100]
            got = [sess.run(lr, {step: s}) for s in steps]
    assert got == pytest.approx([optim.lr_at(plan, s) for s in steps], rel=1e-5, abs=1e-7)


def test_crossed_tells_which_intervals_a_loop_closed():
    assert trainer.crossed(0, 3, 2) and not trainer.crossed(4, 5, 2)
    assert [after for after in range(3, 13, 3) if trainer.crossed(after - 3, after, 4)] == [6, 9, 12]
    assert [s for s in range(1, 13) if trainer.crossed(s - 1, s, 4)] == [4, 8, 12]  # loops of one: every
    assert not trainer.crossed(0, 100, 0)


def test_the_run_is_a_whole_number_of_loops():
    assert trainer.schedule_plan(256, 16, 1, 1, 10, iterations_per_loop=3).total_steps == 12
    assert trainer.schedule_plan(256, 16, 1, 1, 12, iterations_per_loop=3).total_steps == 12
    assert trainer.schedule_plan(256, 16, 1, 1.5, None, iterations_per_loop=100).total_steps == 100
    assert trainer.schedule_plan(256, 16, 1, 1, 10).total_steps == 10


def test_modelzoo_npu_flags_are_accepted_and_checked():
    args = config.parse_flags(["--model", "m", "--iterations_per_loop=100", "--profiling=True", "--over_dump",
                               "--data_dump_flag=False", "--data_dump_step=0|5|10-20", "--bind_core=1",
                               "--loss_scale=dynamic", "--modeldir=/ckpt", "--over_dump_path=/dump"])
    assert (args.iterations_per_loop, args.profiling, args.over_dump) == (100, True, True)
    assert args.data_dump_flag is False
    assert (args.data_dump_step, args.bind_core, args.loss_scale) == ("0|5|10-20", True, "dynamic")
    assert args.checkpoint_dir == "/ckpt" and args.over_dump_path == "/dump"
    defaults = config.parse_flags(["--model", "m"])
    assert defaults.iterations_per_loop == 1 and not (defaults.profiling or defaults.over_dump)
    for bad, words in ((["--iterations-per-loop", "0"], "iterations-per-loop"),
                       (["--data_dump_step=3-1"], "must go up"), (["--data_dump_step=a"], "format"),
                       (["--loss_scale=0.5"], "loss scale"), (["--profiling=maybe"], "True or False")):
        with pytest.raises(TrainError, match=words):
            config.parse_flags(["--model", "m"] + bad)


def test_train_records_carry_overflow_steps_only_with_loss_scaling():
    from train.metrics import human_train_lines, train_record
    plain = train_record(10, 20, 0.5, 1.0, 0.5, 0.1, 100.0, 0.01, 16)
    assert "overflow_steps" not in plain and "loss_scale" not in plain
    scaled = train_record(10, 20, 0.5, 1.0, 0.5, 0.1, 100.0, 0.01, 16, overflow_steps=3, loss_scale=1024.0)
    assert scaled["overflow_steps"] == 3 and scaled["loss_scale"] == 1024.0
    assert "overflow-skipped steps 3 (loss scale 1024)" in human_train_lines(scaled, 100.0)[0]
