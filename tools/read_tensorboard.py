#!/usr/bin/env python3
"""Prints the scalars of the TensorBoard event files in a folder as JSON ({tag: [[step, value],
...]}), read with TensorBoard's own EventAccumulator; tests/controls.rs compares them with the
run's metrics.jsonl. Needs the `tensorboard` package (tests/controls.rs makes a virtualenv
with it in ~/.cache/lorabert/tb-venv when LORABERT_TB_PYTHON is not set):

    python3 tools/read_tensorboard.py runs/RUN/tb
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
    acc.Reload()
    out = {
        tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
