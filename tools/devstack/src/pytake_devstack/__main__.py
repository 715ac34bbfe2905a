"""``python -m pytake_devstack run|demo|schemas`` — what the Makefile calls."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

from pytake_devstack import showcase
from pytake_devstack.mainloop import LoopResult
from pytake_devstack.showcase import CampaignResult, FlowResult
from pytake_devstack.stack import (
    DB_SERVICES,
    DEFAULT_PORTS,
    StackConfig,
    migrate_all,
    processes,
    wait_ready,
)

STATE = Path(os.environ.get("PYTAKE_STATE_DIR", ".pytake")).resolve()


def _procfile(cfg: StackConfig) -> Path:
    """The services' processes (the local broker, if any, runs beside honcho: ``run``)."""
    common = cfg.common_env()
    lines = []
    for proc in processes(cfg):
        own = " ".join(f"{k}={v}" for k, v in proc.env.items() if common.get(k) != v)
        lines.append(f"{proc.name}: exec env {own} {' '.join(proc.argv)}")
    path = STATE / "Procfile"
    path.write_text("\n".join(lines) + "\n")
    (STATE / "stack.env").write_text("".join(f"{k}={v}\n" for k, v in common.items()))
    return path


def run() -> int:
    from pytake_devstack.infra import EmbeddedPostgres, TansuBroker

    STATE.mkdir(parents=True, exist_ok=True)
    pg: EmbeddedPostgres | None = None
    db_url = os.environ.get("PYTAKE_DATABASE_URL")
    if not db_url:
        pg = EmbeddedPostgres(STATE / "postgres")
        db_url = pg.start()
        print(f"embedded PostgreSQL: {db_url} (data in {pg.pgdata})")
    bootstrap = os.environ.get("PYTAKE_KAFKA_BOOTSTRAP")
    broker: TansuBroker | None = None
    try:
        if not bootstrap:
            # Started here, not by honcho: its topics exist before any service starts.
            broker = TansuBroker(
                port=int(os.environ.get("PYTAKE_DEV_KAFKA_PORT", "9092")),
                log_path=STATE / "tansu.log",
            )
            bootstrap = broker.start()
            print(f"Tansu Kafka-protocol broker (memory only): {bootstrap} (log {broker.log_path})")
        cfg = StackConfig(
            db_url, bootstrap, STATE, graph_api_base=os.environ.get("PYTAKE_GRAPH_API_BASE")
        )
        migrate_all(cfg)
        procfile = _procfile(cfg)
        _banner(cfg)
        env = {**os.environ, **cfg.common_env()}
        try:
            return subprocess.call(
                [
                    sys.executable,
                    "-m",
                    "honcho",
                    "start",
                    "-f",
                    str(procfile),
                    "-e",
                    str(STATE / "stack.env"),
                    "-d",
                    os.getcwd(),
                ],
                env=env,
            )
        except KeyboardInterrupt:
            return 0
    finally:
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()
            print("embedded PostgreSQL stopped")


def _banner(cfg: StackConfig) -> None:
    gateway = cfg.url("api-gateway")
    print("\nPyTake is starting:")
    print(f"  {'API gateway':<16} {gateway}   (docs: {gateway}/docs)")
    print(f"  {'Meta webhooks':<16} {gateway}/webhooks/whatsapp")
    for name in sorted(DB_SERVICES, key=lambda service: cfg.ports[service]):
        print(f"  {name:<16} {cfg.url(name)}   (/healthz /readyz /metrics)")
    print(f"  {'Meta simulator':<16} {cfg.url('meta-simulator')}   (Graph API stand-in)")
    print(f"  {'state':<16} {cfg.state_dir}")
    print("Try it: `make demo` in another terminal. Ctrl-C stops everything.\n")


def _print_loop(result: LoopResult) -> None:
    print(f"\nConversation {result.conversation['id']} with {result.customer_wa_id}:")
    for m in result.messages:
        arrow = "customer →" if m["direction"] == "inbound" else "agent    ←"
        print(f"  {arrow} {m.get('text')!r:50} [{m['status']}]")
    print(f"Meta received {len(result.graph_calls)} Graph API send(s) for the number.")


def _print_campaign(sale: CampaignResult) -> None:
    stats = sale.stats
    print(f"\nCampaign {sale.campaign['name']!r}: {stats['status']},")
    print(f"  recipients {stats['recipients_total']}, excluded {stats['exclusions']},")
    print(f"  by status {showcase.nonzero(stats)}, replied {stats['replied']}")
    print(f"Conversation {sale.conversation_id} (the campaign's message and the reply):")
    for m in sale.messages:
        arrow = "customer →" if m["direction"] == "inbound" else "campaign ←"
        print(f"  {arrow} {showcase.shown(m):50} [{m['status']}]")


def _print_flow(triage: FlowResult) -> None:
    conv = triage.conversation
    print(f"\nFlow {triage.flow['name']!r} handed conversation {conv['id']} to")
    print(f"  department {triage.department['name']!r} ({conv['department_id']}), note:")
    for line in triage.note.splitlines():
        print(f"    | {line}")


def demo() -> int:
    from pytake_devstack.mainloop import MainLoop

    async def go() -> int:
        gateway = f"http://127.0.0.1:{DEFAULT_PORTS['api-gateway']}"
        print(f"waiting for the platform at {gateway} (start it with `make run`)...")
        try:
            await asyncio.to_thread(wait_ready, gateway, 90.0)
        except TimeoutError as exc:
            print(f"PyTake is not ready: {exc}", file=sys.stderr)
            return 1
        loop = MainLoop(
            f"http://127.0.0.1:{DEFAULT_PORTS['api-gateway']}",
            f"http://127.0.0.1:{DEFAULT_PORTS['meta-simulator']}",
            log=print,
        )
        try:
            result = await loop.run()
            _print_loop(result)
            sale = await showcase.campaign(loop, result.tenant, result.number)
            _print_campaign(sale)
            triage = await showcase.flow(loop, result.tenant, result.number)
            _print_flow(triage)
        except (showcase.DemoError, TimeoutError) as exc:
            print(f"\nthe demo stopped: {exc}", file=sys.stderr)
            return 1
        finally:
            await loop.aclose()
        return 0

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(prog="pytake_devstack")
    parser.add_argument("command", choices=["run", "demo", "schemas"])
    args = parser.parse_args()
    if args.command == "run":
        sys.exit(run())
    if args.command == "demo":
        sys.exit(demo())
    from pytake_devstack.catalog import write_catalog

    write_catalog(Path.cwd())


if __name__ == "__main__":
    main()
