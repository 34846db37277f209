"""bench/peers/py_parsers.py: parse rate of python-hl7 and hl7apy on the same lab ORU messages
the criterion bench uses (one message per line, segments separated by \\r), single process,
so the numbers are messages/s per core like ours. Timed with the thread's CPU clock
(time.thread_time), like the criterion bench, because the machine is shared.

Usage: python py_parsers.py LAB_FILE [SECONDS]
Prints one line per parser: `peer: name=<n> version=<v> rate=<msg/s> rounds=<r1,r2,...>`;
a parser that is missing or fails prints `peer: name=<n> error=<why>` and the others go on.
"""
import sys
import time


def rounds(parse, msgs, seconds):
    """Repeated passes over the messages: one rate per pass of ~seconds/5, median reported."""
    rates = []
    clock = time.thread_time
    deadline = clock() + seconds
    while clock() < deadline or len(rates) < 3:
        t = clock()
        n = 0
        while clock() - t < seconds / 5:
            for m in msgs:
                parse(m)
            n += len(msgs)
        rates.append(n / (clock() - t))
    rates.sort()
    return rates[len(rates) // 2], rates


def main():
    path = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    with open(path, encoding="utf-8", newline="") as f:
        msgs = [line.rstrip("\n") for line in f.read().split("\n") if line.strip()]
    peers = []
    try:
        import hl7
        peers.append(("python-hl7", getattr(hl7, "__version__", "?"), hl7.parse))
    except Exception as e:  # noqa: BLE001 - report and go on
        print("peer: name=python-hl7 error=%s" % str(e).replace("\n", " "))
    try:
        from hl7apy.parser import parse_message
        # find_groups=False is the fast path hl7apy documents; the full group parse is far
        # slower and is measured too, as it is what validation needs.
        from importlib.metadata import version
        peers.append(("hl7apy", version("hl7apy"),
                      lambda m: parse_message(m, find_groups=False)))
        peers.append(("hl7apy-groups", version("hl7apy"),
                      lambda m: parse_message(m, find_groups=True)))
    except Exception as e:  # noqa: BLE001
        print("peer: name=hl7apy error=%s" % str(e).replace("\n", " "))
    for name, version, parse in peers:
        try:
            parse(msgs[0])
            med, rs = rounds(parse, msgs, seconds)
            print("peer: name=%s version=%s rate=%.0f rounds=%s" % (
                name, version, med, ",".join("%.0f" % r for r in rs)))
        except Exception as e:  # noqa: BLE001
            print("peer: name=%s error=%s" % (name, str(e).replace("\n", " ")[:200]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
