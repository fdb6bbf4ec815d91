"""A subscriber process for the crash tests: appends each handled alert id to a file.

    python -m tests.integration.subscriber_proc --group G --out ids.txt TOPIC...
Settings come from BUS_ environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bus import BusSettings, ReceivedAlert, Subscriber


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("topics", nargs="+")
    parser.add_argument("--group", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    with args.out.open("a", buffering=1) as out:

        async def handle(received: ReceivedAlert) -> None:
            if args.delay_ms:
                await asyncio.sleep(args.delay_ms / 1000)
            out.write(f"{received.alert.alert_id}\n")  # line-buffered: written before commit

        async with Subscriber(
            BusSettings(), group_id=args.group, topics=args.topics, handler=handle
        ) as sub:
            await sub.run()


if __name__ == "__main__":
    asyncio.run(main())
