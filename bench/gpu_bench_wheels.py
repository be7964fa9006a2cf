"""Put the wheels the GPU machine lacks into ``var/wheels`` (git-ignored) and print the device command.

The device machine (docs/benchmarks/gpu.md) has torch, transformers and accelerate but not diffusers or
open_clip; nothing there can reach a registry. This downloads, without dependencies, the exact versions
this project's virtual environment runs (pyproject pins diffusers, open-clip-torch and peft; ftfy, wcwidth
and timm are open_clip's needs the machine lacks or may hold in another version), all pure-Python or abi3
wheels that install on the machine's Python 3.12. Older versions left in the folder are removed: two
versions of one package stop the install there.

    .venv/bin/python bench/gpu_bench_wheels.py          # then: device run, with the printed command
"""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "var" / "wheels"  # var/ is git-ignored; the device call carries it by name
PACKAGES = ("diffusers", "open_clip_torch", "peft", "timm", "ftfy", "wcwidth")
PLATFORM = [
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux2014_x86_64",
]

# One shell line for the device tool (carry: var/wheels, and var/bench once a compile cache came back).
DEVICE_COMMAND = (
    "set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
    "--target /tmp/site var/wheels/*.whl && export PYTHONPATH=/tmp/site || exit 1; "
    "nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv; "
    "PYTHONUNBUFFERED=1 timeout 570 python3 bench/gpu_bench.py --compile-cache var/bench/compile_cache.bin "
    "2>&1 | tee $OUT/gpu_bench.log"
)


def pinned() -> dict[str, str]:
    return {name: md.version(name) for name in PACKAGES}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def main() -> None:
    versions = pinned()
    WHEELS.mkdir(parents=True, exist_ok=True)
    for wheel in WHEELS.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        wanted = {_normalise(n): v for n, v in versions.items()}
        if wanted.get(_normalise(name)) != version:
            wheel.unlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            *PLATFORM,
            "-d",
            str(WHEELS),
            *[f"{name}=={version}" for name, version in versions.items()],
        ],
        check=True,
    )
    size = sum(w.stat().st_size for w in WHEELS.glob("*.whl"))
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {WHEELS.relative_to(ROOT)}")
    print("device run: carry ['var/wheels'] (add 'var/bench' with a compile cache), timeout_s 600, command:")
    print(DEVICE_COMMAND)


if __name__ == "__main__":
    main()
