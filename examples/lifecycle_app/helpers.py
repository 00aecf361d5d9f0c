import csv


def load_data(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [float(r["x"]) for r in rows], [float(r["y"]) for r in rows]
