"""Medians across runs of the RESULT lines printed by state-store-spike."""
import collections, statistics, sys

rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    _, cand, phase, *kv = line.split()
    d = dict(x.split("=", 1) for x in kv)
    rows[(cand, phase, int(d["entries"]))].append(d)

for (cand, phase, n), ds in sorted(rows.items()):
    keys = [k for k in ds[0] if k != "entries"]
    med = {k: statistics.median(float(d[k]) for d in ds) for k in keys}
    print(f"{cand:5} {phase:8} entries={n:<9} runs={len(ds)} " +
          " ".join(f"{k}={v:g}" for k, v in med.items()))
