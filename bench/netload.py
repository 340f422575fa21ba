"""One load client as its own process, so it can run inside a network namespace (`ip netns exec NS python -m
bench.netload ...`) and so two clients never share an interpreter lock.

Protocol, one JSON object per line on stdout:

- ``{"event": "flowing", ...}`` once one second of requests (``rate`` of them) has completed;
- then it reads stdin: the line ``stop`` (or end of input) asks it to stop once at least ``--min-requests`` requests
  have completed;
- ``{"event": "result", "summary": ..., "started": ..., "timeline": [...]}`` when it has stopped.

Every bound holds without the parent: at most ``--max-requests`` requests and ``--max-seconds`` seconds of load; the
process exits after ``--max-seconds`` plus the request timeout even if nobody says stop. Times in the timeline are
CLOCK_MONOTONIC seconds, the same clock as the parent's ``time.monotonic()`` (network namespaces share it).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from bench.loadgen import SteadyLoad

TIMEOUT_S = 10.0


def _emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.netload", description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--retrying", action="store_true", help="the retrying client (strict=False)")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--max-requests", type=int, default=0, help="default: rate × max-seconds + 1")
    parser.add_argument("--min-requests", type=int, default=0)
    parser.add_argument("--maintenance-marker", default=None,
                        help="a 503 whose body contains this text is an expected answer, not a failure")
    args = parser.parse_args(argv)

    timeline: list[tuple[float, float, str, str | None]] = []
    max_requests = args.max_requests or int(args.rate * args.max_seconds) + 1
    load = SteadyLoad(args.url, rate=args.rate, max_seconds=args.max_seconds, max_requests=max_requests,
                      timeout=TIMEOUT_S, timeline=timeline, strict=not args.retrying,
                      maintenance_marker=args.maintenance_marker.encode() if args.maintenance_marker else None)
    stop_asked = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop_asked.set()  # "stop" or end of input (the parent went away)

    threading.Thread(target=read_stdin, daemon=True).start()
    load.start()
    deadline = load._started + args.max_seconds
    load.wait_for(max(1, int(args.rate)), timeout=min(30.0, args.max_seconds))
    _emit({"event": "flowing", "sent": load.result.sent, "failed": load.result.failed,
           "t": time.monotonic()})
    stop_asked.wait(max(0.0, deadline - time.monotonic()))
    while load.result.sent < args.min_requests and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a counter: the requests complete on the load's own clock
    result = load.stop()
    with load._lock:
        rows = [[round(a, 6), round(b, 6), status, release] for a, b, status, release in timeline]
    _emit({"event": "result", "strict": not args.retrying, "rate": args.rate, "url": args.url,
           "started": load._started, "summary": result.summary(), "timeline": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
