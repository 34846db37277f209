"""bench/histogram.py: p50/p99 of dmpflow_end_to_end_seconds over one window, from two scrapes
of /metrics (before, after): the bucket deltas are the observations of that window only, so
the latencies of an earlier backlog do not leak in. Quantiles are interpolated linearly inside
a bucket, as Prometheus' histogram_quantile does; the buckets (pipeline/src/metrics.rs,
END_TO_END_BUCKETS) are 25-50 ms apart up to 300 ms, 250 ms (the p99 target) being a bound,
coarser above (doubling from 0.5 ms before session 13: read older results as "within a
factor-2 bucket"). Prints KEY_count, KEY_p50_ms, KEY_p99_ms, KEY_buckets.

STAGE (default store) picks the series: the store's is produce -> stored, the end to end;
normalize's (since session 14) is produce -> normalize's outputs acknowledged, the share of
the latency spent before the store's topic.

Usage: python3 bench/histogram.py BEFORE AFTER KEY [STAGE]
"""
import re
import sys


STAGE = sys.argv[4] if len(sys.argv) > 4 else "store"


def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'dmpflow_end_to_end_seconds_bucket\{(.*)\}\s+(\S+)', line)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))) if m else {}
        if labels.get("stage") == STAGE and "le" in labels:
            le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            out[le] = out.get(le, 0) + float(m.group(2))
    return out


b0, b1 = buckets(sys.argv[1]), buckets(sys.argv[2])
key = sys.argv[3]
cum = [(le, b1[le] - b0.get(le, 0)) for le in sorted(b1)]
total = cum[-1][1] if cum else 0


def q(p):
    rank, prev_le, prev_c = p * total, 0.0, 0.0
    for le, c in cum:
        if c >= rank:
            if le == float("inf"):
                return prev_le  # beyond the last finite bucket: report its bound
            return prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return float("nan")


print("%s_count=%d" % (key, total))
if total:
    print("%s_p50_ms=%.1f" % (key, q(0.5) * 1e3))
    print("%s_p99_ms=%.1f" % (key, q(0.99) * 1e3))
    print("%s_buckets=%s" % (key, " ".join("%g:%d" % (le * 1e3, c) for le, c in cum if c)))
