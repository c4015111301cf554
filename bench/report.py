"""What the bench scripts' markdown reports share: the load tool's -json
rows, medians over the rows of one label or scenario, error counts and
markdown tables. Imported by the reports in bench/*.sh and
scaleout_report.py."""
import json
import os
import statistics


def load(path):
    """The JSON-lines rows of path (none when it does not exist)."""
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


def median(rows, key, **where):
    """The median of key over the rows whose fields match where."""
    return statistics.median(r[key] for r in rows if all(r[k] == v for k, v in where.items()))


def errors(rows):
    return sum(r["errors"] for r in rows)


def table(header, *lines):
    """Prints a markdown table: the first column left, the others right."""
    print("| " + " | ".join(header) + " |")
    print("|---|" + "--:|" * (len(header) - 1))
    for line in lines:
        print("| " + " | ".join(str(c) for c in line) + " |")
