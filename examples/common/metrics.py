"""Training metrics as JSON lines, one record per logged step."""

import json
import os


class MetricsLog:
    """Appends ``{"step": ..., name: value, ...}`` records to a ``.jsonl`` file.

    Parameters
    ----------
    path
        The file; created (with its directory) on the first write.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def read(self) -> list[dict]:
        """Every record written so far, in order; empty if there is no file."""
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def truncate(self, last_step: int) -> None:
        """Drops the records after ``last_step``.

        A run that resumes from a checkpoint at ``last_step`` repeats the steps
        after it; their old records would otherwise appear twice.
        """
        records = self.read()
        kept = [r for r in records if r["step"] <= last_step]
        if len(kept) == len(records):
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            for record in kept:
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, self.path)

    def write(self, step: int, values: dict) -> None:
        """Appends one record."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        record = {"step": int(step), **{k: float(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
