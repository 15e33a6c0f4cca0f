"""Issue-5 measurement: weights exchanged as bfloat16 / float16 instead of float32.

    python benchmarks/compression.py --seeds 3 --workers 4 --epochs 3

``nosync train --wire-dtype DTYPE`` on Fashion-MNIST (mlp) for each dtype and seed, with the same
steps per worker: the bytes sent in sync rounds per worker and the selected model's test
accuracy.  Finished runs are skipped when run again.  Writes
``benchmarks/results/compression/compression.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import nosync_run

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtypes", default="float32,bfloat16,float16")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "compression"))
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for dtype in args.dtypes.split(","):
        for seed in range(args.seeds):
            flags = [
                "--workers", str(args.workers), "--dataset", "fashion-mnist",
                "--epochs", str(args.epochs), "--seed", str(seed), "--wire-dtype", dtype,
                "--threads", "1",
            ]  # fmt: skip
            done = nosync_run.run("train", flags, out / "cells" / f"{dtype}-s{seed}")
            summary, records = done.summary, done.records
            round_bytes = sum(r["comm_bytes"] for r in records if r["type"] == "round")
            rows.append(
                {
                    "dtype": dtype,
                    "seed": seed,
                    "accuracy": summary["test_accuracy"],
                    "round_bytes": round_bytes,
                    "rounds": summary["sync_rounds"],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    (out / "compression.json").write_text(
        json.dumps(
            {
                "command": " ".join(["python", "benchmarks/compression.py", *sys.argv[1:]]),
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    base = statistics.mean(r["round_bytes"] for r in rows if r["dtype"] == "float32")
    print(
        "| exchange dtype | MB sent in sync rounds per worker | vs float32 | test acc % "
        "(mean ± std) |\n|---|---|---|---|"
    )
    for dtype in args.dtypes.split(","):
        rs = [r for r in rows if r["dtype"] == dtype]
        mb = statistics.mean(r["round_bytes"] for r in rs)
        accs = [100 * r["accuracy"] for r in rs]
        spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        print(
            f"| {dtype} | {mb / 1e6:.1f} | {mb / base:.2f} | {statistics.mean(accs):.2f}{spread} |"
        )


if __name__ == "__main__":
    main()
