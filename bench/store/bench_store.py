"""Store throughput: 1,000,000 x 512 float16 rows through both backends against numpy.save/load.

Each case runs in a fresh process, after ``sync`` (so one case's write-back does not land in the
next one's timing), ``--repeats`` times; figures are medians. Peak memory is the process's high-water
mark (Linux ``VmHWM``, reset just before the measured calls) above its resident size at that point.
The anchor (``numpy.save`` / ``numpy.load`` of the same array, same disk) runs in the same
invocation, and the results are ratios to it. Usage::

    .venv/bin/python bench/store/bench_store.py [--rows 1000000] [--dim 512] [--out bench/store/results.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BLOCK_ROWS = 8192


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak() -> float:
    """Reset the high-water mark to the current resident size and return that size (MiB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    return _status_mb("VmHWM")


def _blocks(rows: int, dim: int):
    from aloe.data.synthetic import iter_random_blocks

    return iter_random_blocks(rows, dim, BLOCK_ROWS, seed=0)


def run_case(case: str, folder: Path, rows: int, dim: int) -> dict:
    """One measurement in this process: seconds spent in the I/O calls and peak RSS above baseline."""
    from aloe.store import create_store, open_store

    seconds = 0.0
    baseline = _reset_peak()
    if case == "numpy-write":
        array = np.concatenate([b for _, b in _blocks(rows, dim)])
        baseline = _reset_peak()
        start = time.perf_counter()
        np.save(folder / "x.npy", array)
        seconds = time.perf_counter() - start
    elif case == "numpy-read":
        start = time.perf_counter()
        array = np.load(folder / "x.npy")
        seconds = time.perf_counter() - start
        assert array.shape == (rows, dim)
    elif case.endswith("-write"):
        suffix = ".zarr" if case.startswith("zarr") else ".h5"
        target = folder / f"pool{suffix}"
        for leftover in (target, target.with_name(target.name + ".d")):
            shutil.rmtree(leftover, ignore_errors=True)
            if leftover.is_file():
                leftover.unlink()
        store = create_store(target, [str(i) for i in range(rows)])
        baseline = _reset_peak()
        writer = store.begin_round(0, feature_dim=dim, class_names=["a", "b"], labeled_positions=[],
                                   labeled_classes=[], chunk_rows=BLOCK_ROWS)
        logits = np.zeros((BLOCK_ROWS, 2), dtype=np.float32)
        for _, block in _blocks(rows, dim):
            start = time.perf_counter()
            writer.write(block, logits[: len(block)])
            seconds += time.perf_counter() - start
        start = time.perf_counter()
        writer.commit()
        seconds += time.perf_counter() - start
    elif case.endswith("-read") or case.endswith("-read32"):
        suffix = ".zarr" if case.startswith("zarr") else ".h5"
        from aloe.internal.arrays import cast

        cast(np.zeros(1, dtype=np.float16), np.float32)  # torch's import, as in the selector, untimed
        reader = open_store(folder / f"pool{suffix}").round(0)
        baseline = _reset_peak()
        start = time.perf_counter()
        array = reader.features(dtype=np.float32 if case.endswith("32") else None)
        seconds = time.perf_counter() - start
        assert array.shape == (rows, dim)
    else:
        raise ValueError(case)
    return {"case": case, "seconds": seconds, "peak_above_baseline_mb": _peak_mb() - baseline}


CASES = ["numpy-write", "numpy-read", "zarr-write", "zarr-read", "zarr-read32",
         "hdf5-write", "hdf5-read", "hdf5-read32"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.folder, args.rows, args.dim)))
        return
    folder = Path(tempfile.mkdtemp(prefix="aloe-bench-store-", dir=Path(__file__).parent))
    try:
        results = {}
        for case in CASES:
            runs = []
            for _ in range(args.repeats):
                os.sync()
                out = subprocess.run(
                    [sys.executable, __file__, "--case", case, "--folder", str(folder),
                     "--rows", str(args.rows), "--dim", str(args.dim)],
                    check=True, capture_output=True, text=True,
                ).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
            results[case] = {
                "seconds": statistics.median(r["seconds"] for r in runs),
                "peak_above_baseline_mb": max(r["peak_above_baseline_mb"] for r in runs),
                "runs": [round(r["seconds"], 3) for r in runs],
            }
            print(case, results[case], flush=True)
    finally:
        shutil.rmtree(folder)
    gib = args.rows * args.dim * 2 / 2**30
    lines = [
        "# Store benchmark",
        "",
        f"{args.rows:,} x {args.dim} float16 ({gib:.2f} GiB), written in {BLOCK_ROWS}-row blocks through "
        f"the streaming writer (chunks of {BLOCK_ROWS} rows, uncompressed); anchor: numpy.save / "
        f"numpy.load of the same array in the same run. Machine: {platform.machine()}, "
        f"{__import__('os').cpu_count()} cores; `python bench/store/bench_store.py`.",
        "",
        "| case | median seconds | runs | ratio to numpy | peak memory above baseline (MiB) |",
        "|---|---:|---|---:|---:|",
    ]
    for case in CASES:
        r = results[case]
        anchor = results["numpy-write" if "write" in case else "numpy-read"]["seconds"]
        lines.append(f"| {case} | {r['seconds']:.2f} | {r['runs']} | {r['seconds'] / anchor:.2f} | "
                     f"{r['peak_above_baseline_mb']:.0f} |")
    lines += ["", "`-read` returns the stored float16; `-read32` converts to float32 as the selector does.",
              "numpy-write's peak excludes the array it saves (allocated before the baseline).",
              f"Chunk size: {BLOCK_ROWS} x {args.dim} float16 = {BLOCK_ROWS * args.dim * 2 / 2**20:.0f} MiB."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
