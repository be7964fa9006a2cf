"""Run ``python -m ml COMMAND`` for a run in its own process group, under ``accelerate launch``
when it asks for more than one process, and follow it until it ends.

The Celery task stays a thin supervisor: training happens in a child process tree, so a run can
span every GPU of a machine (one process each) and a crash in CUDA code takes down the child,
not the worker. While the child runs, the supervisor

* streams its stderr into the run's log tail (flushed about once a second),
* follows the trainer's ``metrics.jsonl`` (the run's metrics series and progress),
* polls the run's status: a cancelled run has its whole process group stopped (SIGTERM, then
  SIGKILL after ``ML_CANCEL_GRACE_SECONDS``) and :class:`RunCancelled` is raised,
* on SIGTERM to the worker process (``revoke(terminate=True)``) stops the group the same way,
* asks the kernel to SIGTERM the launcher if the worker process dies outright (``PR_SET_PDEATHSIG``),
  and records the group id so a redelivered run first stops a leftover group on the same host.

The command's result is the last JSON object it printed on stdout (the CLI's ``--json``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

from django.conf import settings

from ml.services.runs.context import RunCancelled, RunContext

POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


class CommandFailed(RuntimeError):
    pass


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # not Linux (no libc.so.6): a redelivered run still stops the leftover group (see stop_leftover)
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Command(NamedTuple):
    argv: list[str]
    env: dict[str, str]


def ml_command(command: str, args: list[str], *, processes: int = 1, cpu: bool | None = None) -> Command:
    """``python -m ml COMMAND --json ARGS``, through ``accelerate launch`` (torchrun) for several processes.

    On machines without CUDA (or with ``cpu=True``) the processes train on the CPU and talk over
    gloo: accelerate's torchrun launcher with ``ACCELERATE_USE_CPU`` (its ``--cpu`` flag alone
    would start a single process unless MPI is set up).
    """
    if processes <= 1:
        return Command([sys.executable, "-m", "ml", command, "--json", *args], {})
    if cpu is None:
        import torch

        cpu = not torch.cuda.is_available()
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(_free_port()),
        "--dynamo_backend",
        "no",
        "--mixed_precision",
        "no",
    ]  # the trainers pick their own precision (TrainConfig.mixed_precision)
    env = {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")} if cpu else {}
    return Command([*launch, "-m", "ml", command, "--json", *args], env)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pgid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def stop_leftover(ctx: RunContext) -> None:
    """A redelivered run: stop the process group an earlier delivery left running on this host."""
    record = ctx.run.artifacts.get("process") or {}
    if record.get("host") == socket.gethostname() and record.get("pgid") and _alive(record["pgid"]):
        ctx.log(f"stopping the leftover process group {record['pgid']} of an earlier delivery")
        stop_group(record["pgid"], settings.ML_CANCEL_GRACE_SECONDS)


class _MetricsFollower:
    """Reads new lines of a JSONL metrics file; a resumed trainer truncates and re-appends it."""

    def __init__(self, path: Path | None):
        self.path, self._offset = path, 0
        self.records: list[dict] = []

    def poll(self) -> bool:
        if self.path is None or not self.path.exists():
            return False
        size = self.path.stat().st_size
        if size < self._offset:  # truncated by a resumed run: read it again
            self.records, self._offset = [], 0
        if size == self._offset:
            return False
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            try:
                self.records.append(json.loads(line))
            except ValueError:
                continue
        return bool(complete)


def run_command(
    ctx: RunContext,
    command: Command,
    *,
    metrics_file: Path | None = None,
    total_steps: int | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> dict:
    """Run ``command`` (see :func:`ml_command`) for ``ctx.run`` and return its JSON result.

    ``metrics_file`` (a trainer's metrics.jsonl) becomes the run's metrics series; with
    ``total_steps`` its last ``step`` sets progress inside ``progress_span``. Raises
    :class:`RunCancelled` when the run is cancelled and :class:`CommandFailed` (with the last
    lines of stderr) when the command exits non-zero.
    """
    stop_leftover(ctx)
    argv = command.argv
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", **command.env}
    ctx.log("$ " + " ".join(argv))
    ctx.progress(phase="loading the model")  # until the trainer writes its first metrics record
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=child_env,
        start_new_session=True,
        preexec_fn=_die_with_parent,
        cwd=settings.BASE_DIR,
    )
    pgid = proc.pid  # start_new_session: the child leads its own group
    ctx.run.artifacts["process"] = {"host": socket.gethostname(), "pgid": pgid}
    ctx.save_artifacts()

    stdout: list[bytes] = []
    child_stdout = proc.stdout
    assert child_stdout is not None  # stdout=PIPE
    stderr_tail: deque[str] = deque(maxlen=40)
    pending: deque[str] = deque()
    readers = [
        threading.Thread(target=lambda: stdout.extend(child_stdout), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, pending, stderr_tail), daemon=True),
    ]
    for reader in readers:
        reader.start()
    follower = _MetricsFollower(metrics_file)
    previous = _on_sigterm(pgid)
    try:
        while True:
            finished = proc.poll() is not None
            _flush(ctx, pending)
            if follower.poll():
                ctx.set_metrics(follower.records)
                _progress(ctx, follower.records, total_steps, progress_span)
                if ctx.run.phase != "training":
                    ctx.progress(phase="training")
            if finished:
                break
            if ctx.is_cancelled():
                ctx.log("cancelling: stopping the process group")
                stop_group(pgid, settings.ML_CANCEL_GRACE_SECONDS)
                proc.wait()
                raise RunCancelled()
            time.sleep(POLL_SECONDS)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:  # an exception in this loop: leave nothing running
            stop_group(pgid, settings.ML_CANCEL_GRACE_SECONDS)
            proc.wait()
        for reader in readers:
            reader.join(timeout=5)
        _flush(ctx, pending)
    if proc.returncode != 0:
        raise CommandFailed(
            f"{Path(argv[0]).name} ... {' '.join(argv[2:4])} exited with {proc.returncode}:\n" + "\n".join(stderr_tail)
        )
    return _last_json(b"".join(stdout).decode(errors="replace"))


def _pump(stream, pending: deque, tail: deque) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        # tqdm redraws with carriage returns; keep the latest state of such a line only.
        line = line.rsplit("\r", 1)[-1]
        if line:
            pending.append(line)
            tail.append(line)


def _flush(ctx: RunContext, pending: deque) -> None:
    lines = []
    while pending:
        lines.append(pending.popleft())
    if lines:
        ctx.log("\n".join(lines))


def _progress(ctx: RunContext, records: list[dict], total: int | None, span: tuple[float, float]) -> None:
    # The scorer trainer logs ``step``; the FLUX trainers log ``optimizer_step``.
    steps = [r.get("step", r.get("optimizer_step")) for r in records]
    numbers = [s for s in steps if isinstance(s, (int, float))]
    if total and numbers:
        low, high = span
        ctx.progress(low + (high - low) * min(1.0, max(numbers) / total))


def _on_sigterm(pgid: int):
    """While supervising, SIGTERM to this process stops the child group first, then this process."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        stop_group(pgid, settings.ML_CANCEL_GRACE_SECONDS)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    return signal.signal(signal.SIGTERM, handler)


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    raise CommandFailed(f"the command printed no JSON result; its output ended with: {text[-500:]!r}")
