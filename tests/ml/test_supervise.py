"""The run supervisor: a command in its own process group, its log, metrics, result, failure and
cancellation, and ``accelerate launch`` with two CPU processes on the gloo backend."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest
from django.db import connection

from ml.core.synthetic import make_synthetic_split
from ml.core.tiny import make_tiny_scorer
from ml.models import Run
from ml.services.runs import supervise
from ml.services.runs.context import RunCancelled, RunContext
from science_t2i.format import write_parquet
from tests.support.runs import queued_run


def _python(code: str) -> supervise.Command:
    return supervise.Command([sys.executable, "-c", code], {})


@pytest.fixture
def ctx(admin_user, settings, tmp_path):
    settings.ML_WORK_ROOT = tmp_path / "work"
    settings.ML_CANCEL_GRACE_SECONDS = 2
    run = queued_run(admin_user)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    run.refresh_from_db()
    return RunContext(run)


def test_it_returns_the_last_json_line_and_logs_stderr(ctx):
    code = "import sys, json; print('warming up', file=sys.stderr); print(json.dumps({'ok': 1}))"
    assert supervise.run_command(ctx, _python(code)) == {"ok": 1}
    assert "warming up" in ctx.run.log_tail and ctx.run.artifacts["process"]["pgid"] > 0


def test_a_failing_command_raises_with_the_end_of_its_stderr(ctx):
    code = "import sys; print('loading', file=sys.stderr); sys.exit('boom: bad checkpoint')"
    with pytest.raises(supervise.CommandFailed, match="exited with 1") as caught:
        supervise.run_command(ctx, _python(code))
    assert "boom: bad checkpoint" in str(caught.value)


def test_metrics_become_the_series_and_progress(ctx, tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    code = (
        f"import json, time\nfor s in (1, 2):\n"
        f"    open({str(metrics)!r}, 'a').write(json.dumps({{'step': s, 'loss': 1.0 / s}}) + '\\n')\n"
        f"    time.sleep(0.6)\nprint('{{}}')"
    )
    supervise.run_command(ctx, _python(code), metrics_file=metrics, total_steps=4, progress_span=(0.0, 0.8))
    assert [m["step"] for m in ctx.run.metrics] == [1, 2]
    assert ctx.run.progress == pytest.approx(0.4)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the canceller thread sees the run
def test_cancelling_stops_the_whole_process_group(ctx, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)"
    )

    def cancel_when_started():
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.05)
        Run.objects.filter(pk=ctx.run.pk).update(status=Run.Status.CANCELLED)
        connection.close()  # this thread's own connection, or the test database cannot be dropped

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    started = time.monotonic()
    with pytest.raises(RunCancelled):
        supervise.run_command(ctx, _python(code))
    canceller.join()
    assert time.monotonic() - started < 30
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _exists(grandchild):
        time.sleep(0.05)
    assert not _exists(grandchild), "the grandchild survived the cancellation"


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_accelerate_launch_trains_on_two_cpu_processes_with_gloo(ctx, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_parquet(make_synthetic_split(0, 8, "train", size=32), data / "train.parquet")
    write_parquet(make_synthetic_split(0, 4, "val", size=32), data / "validation.parquet")
    init = make_tiny_scorer(tmp_path / "init", seed=0)
    out = tmp_path / "out"
    args = [
        "--train",
        str(data / "train.parquet"),
        "--val",
        str(data / "validation.parquet"),
        "--out",
        str(out),
        "--model",
        str(init),
        "--lr",
        "0.001",
        "--warmup-steps",
        "0",
        "--total-steps",
        "2",
        "--batch-size",
        "2",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "0",
        "--save-format",
        "open_clip",
    ]
    command = supervise.ml_command("train-scorer", args, processes=2, cpu=True)
    assert "accelerate.commands.launch" in command.argv and command.env["ACCELERATE_USE_CPU"] == "true"
    result = supervise.run_command(ctx, command, metrics_file=out / "metrics.jsonl", total_steps=2)
    assert result["num_processes"] == 2 and result["optimizer_steps"] == 2
    assert [m["step"] for m in ctx.run.metrics] == [1, 2]
    assert (out / "final").is_dir()
    assert json.loads((out / "summary.json").read_text())["tuples_seen"] == 2 * 2 * 2
