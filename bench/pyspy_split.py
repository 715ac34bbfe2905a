"""Where a service's samples go: a py-spy profile (``--format raw``) split by path.

Record one while a benchmark runs, e.g. whatsapp-gateway during
``bench/whatsapp_outbound.py`` (its child process ``pytake_whatsapp_gateway serve``)::

    py-spy record -p PID -d 20 -r 50 --nonblocking -f raw -o gateway.txt

then ``python bench/pyspy_split.py gateway.txt``. Each sample goes to the first path
whose frame it contains (the order below), else to its innermost frame. Samples count
time on the CPU or waiting for it (a loaded box inflates every share alike); the
process's CPU per operation comes from the benchmark itself.

Usage: python bench/pyspy_split.py PROFILE [--top 12] [--under FRAME]
(``--under``: only the samples inside FRAME, split by the frames they contain).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

#: (label, a frame's name the sample's stack contains), first match wins.
PATHS = [
    ("whatsapp-gateway sender (Dispatcher._handle)", "Dispatcher._handle "),
    ("whatsapp-gateway dispatcher loop (takes)", "Dispatcher.run "),
    ("status webhook intake: group commit", "GroupCommit."),
    ("HTTP requests served (ASGI app)", "RequestResponseCycle.run_asgi "),
    ("HTTP protocol (uvicorn)", "httptools_impl"),
    ("outbox relay", "OutboxRelay."),
    ("event consumer", "EventConsumer."),
    ("Kafka client (aiokafka)", "AIOKafka"),
    ("simulator: status webhooks posted", "WebhookSender.deliver_statuses "),
    ("event loop, native code (uvloop, asyncpg protocol)", "Runner.run "),
]


def stacks(path: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            out.append((stack.split(";"), int(count)))
    return out


def label(frames: list[str]) -> str:
    joined = ";".join(frames)
    for name, needle in PATHS[:-1]:
        if needle in joined:
            return name
    innermost = frames[-1].split(" (")[0]
    return PATHS[-1][0] if innermost == "Runner.run" else f"other: {innermost}"


def frame_name(frame: str) -> str:
    """``Sender.send (pytake_whatsapp_gateway/sending/sender.py:240)`` -> ``Sender.send``."""
    return frame.split(" (")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--under", default=None, help="only samples inside this frame")
    args = parser.parse_args()
    samples = stacks(args.profile)
    total = sum(n for _, n in samples)
    if args.under is None:
        split: Counter[str] = Counter()
        for frames, n in samples:
            split[label(frames)] += n
        print(f"{args.profile.name}: {total} samples")
        for name, n in split.most_common(args.top):
            print(f"{100 * n / total:5.1f}%  {name}")
        return
    inside = [(f, n) for f, n in samples if any(frame_name(x) == args.under for x in f)]
    within = sum(n for _, n in inside)
    frames_in: Counter[str] = Counter()
    for frames, n in inside:
        for name in {
            frame_name(x) for x in frames[[frame_name(x) for x in frames].index(args.under) :]
        }:
            frames_in[name] += n
    print(f"{args.profile.name}: {within} of {total} samples inside {args.under}")
    for name, n in frames_in.most_common(args.top):
        print(f"{100 * n / within:5.1f}%  {name}")


if __name__ == "__main__":
    main()
