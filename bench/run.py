"""`make bench`: the sync at the API's quota against the alternatives, the warehouse side at a million rows, the
reconcile of 10 full PMAs, and DAG parse times, measured in one run; prints one table and writes BENCHMARKS.md (with
bench/analysis.md appended).

python -m bench.run [--n 600] [--quota 20] [--rows 1000000] [--only parse,warehouse,reconcile,quota]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
from pathlib import Path

from dev import PROJECT_DIR

TARGETS = {
    "rate": 0.95,  # creates per second ÷ Q while creating (issue 12; 0.90 in issue 5)
    "throttled": 0.01,
    "run": 1.10,  # (run time - fixed start-up) ÷ (N ÷ Q) (issue 12; 1.25 in issue 5)
    "warehouse_seconds": 120,
    "warehouse_mib": 2048,
    "steady_seconds": 20,  # 1M converged, 1% changed: the next run's selection and checks
    "steady_mib": 1024,
    "parse_seconds": 0.2,
}


def machine() -> str:
    memory = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    gib = int(memory.split()[1]) / 2**20
    return f"{os.cpu_count()} cores ({cpu}), {gib:.0f} GiB memory, Linux {platform.release()}, Python {platform.python_version()}"


def steady_ratio(result) -> float:
    """(run time - fixed start-up) ÷ (N ÷ Q)."""
    return (result.seconds - result.startup_seconds) / (result.n / result.quota)


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def quota_table(results) -> list[str]:
    lines = [
        "| approach | N | Q | state | creates/s ÷ Q | throttled | run s | run ÷ (N/Q) | start-up s | (run - start-up) ÷ (N/Q) | max creates in 1 s | peak task RSS MiB | duplicates | repeats |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        steady = steady_ratio(r)
        lines.append(
            f"| {r.name} | {r.n} | {r.quota:g} | {r.state} | {r.rate_ratio:.2f} | {r.throttled_share:.1%} "
            f"({r.throttled}/{r.create_requests}) | {r.seconds:.1f} | {r.run_ratio:.2f} | {r.startup_seconds:.1f} | "
            f"{steady:.2f} | {r.max_per_second} | {r.peak_task_rss_mib:.0f} | {r.duplicates} | {r.repeats} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600, help="candidates of the quota runs")
    parser.add_argument("--quota", type=float, default=20.0, help="the emulator's creates per second per account")
    parser.add_argument("--rows", type=int, default=1_000_000, help="candidates of the warehouse-scale runs")
    parser.add_argument("--only", default="parse,warehouse,reconcile,quota", help="comma-separated sections to run")
    parser.add_argument("--output", default=str(PROJECT_DIR / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    sections = set(args.only.split(","))
    command = "make bench" if argv is None and len(sys.argv) == 1 else "python -m bench.run " + shlex.join(sys.argv[1:])
    out = [
        "# Benchmarks",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Command: `{command}`",
        "",
        "Targets (issue 5): a million-row feed selected, checked and staged in < 2 min and < 2 GiB; each DAG file"
        " parsed in < 0.2 s by the DAG processor. Issue 9: the same million converged with 1% changed, the next run's"
        " selection and checks in < 20 s and < 1 GiB. Issue 12 (raised from issue 5's 90% and 1.25): the sync's"
        " creates at ≥ 95% of Q with ≤ 1% throttled and 0 duplicates, the whole run ≤ 1.1 x N ÷ Q plus the start-up"
        " (trigger → first create), on the LocalExecutor and on the CeleryExecutor with two workers.",
        "",
    ]

    if "parse" in sections:
        from bench import parse_time

        print("Measuring DAG parse times ...", flush=True)
        parse = parse_time.run()
        out += [
            "## DAG parse time",
            "",
            f"Each file alone in a DAGs folder; `airflow dag-processor -n {parse_time.PARSES}` records each parse's"
            " duration in `dag.last_parse_duration` (the manager pre-imports the file's `airflow.*` modules and"
            " gc.freeze()s before forking each parse; `airflow dags report` does neither).",
            "",
            f"| DAG file | by the DAG processor: median `last_parse_duration` s ({parse_time.PARSES} parses) |"
            " each parse s | `airflow dags report` s | python file - bare interpreter s | target < 0.2 s (DAG processor) |",
            "|---|---|---|---|---|---|",
        ]
        for name, figures in parse.items():
            each = ", ".join(f"{seconds:.3f}" for seconds in figures["parses"])
            out.append(
                f"| {name} | {figures['dag_processor']:.3f} | {each} | {figures['dags_report']:.3f} | "
                f"{figures['python_minus_bare']:.2f} | {mark(figures['dag_processor'] < TARGETS['parse_seconds'])} |"
            )
        out.append("")

    if "warehouse" in sections:
        from bench import warehouse_scale

        out += [
            f"## Warehouse side: {args.rows:,} candidates",
            "",
            "| warehouse | load s (not part of the target) | select + check + stage s | peak RSS MiB | selected | rejected | staged | batches | phases s | target |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        steady_rows = []
        for kind, facts in warehouse_scale.KINDS.items():
            target = facts.target
            print(f"Loading {args.rows:,} candidates into {kind} ...", flush=True)
            load_seconds = warehouse_scale.load(kind, target, args.rows)
            print(f"Selecting, checking and staging them on {kind} ...", flush=True)
            figures = warehouse_scale.measure(kind, target)
            ok = (
                figures["seconds"] < TARGETS["warehouse_seconds"] and figures["peak_rss_mib"] < TARGETS["warehouse_mib"]
            )
            phases = ", ".join(f"{name} {value:.1f}" for name, value in figures["phases"].items())
            out.append(
                f"| {kind} | {load_seconds:.0f} | {figures['seconds']:.1f} | {figures['peak_rss_mib']} | "
                f"{figures['selected']:,} | {figures['rejected']:,} | {figures['staged']:,} | {figures['batches']} | "
                f"{phases} | {mark(ok)} |"
            )
            print(f"Converging them and changing 1% on {kind}; the next run's selection and checks ...", flush=True)
            change_seconds = warehouse_scale.converge_and_change(kind, target, "bench-1m")
            for mode in ("create", "upsert"):
                steady = warehouse_scale.measure(kind, target, f"bench-steady-{mode}", mode)
                ok = steady["seconds"] < TARGETS["steady_seconds"] and steady["peak_rss_mib"] < TARGETS["steady_mib"]
                phases = ", ".join(f"{name} {value:.1f}" for name, value in steady["phases"].items())
                plan = ", ".join(f"{action} {n:,}" for action, n in steady["plan"].items())
                steady_rows.append(
                    f"| {kind} | {mode} | {change_seconds:.0f} | {steady['seconds']:.1f} | {steady['peak_rss_mib']} | "
                    f"{steady['skipped_done']:,} | {steady['changed_after_done']:,} | {steady['selected']:,} | "
                    f"{steady['rejected']:,} | {steady['staged']:,} | {plan} | {phases} | {mark(ok)} |"
                )
        out += [
            "",
            f"## Steady state: {args.rows:,} candidates converged, 1% changed since",
            "",
            "Every row the cold run staged recorded as created, with the request it sent; then 0.5% renamed after"
            " creation and 0.5% of the rejected rows fixed in the feed (checked and staged). Mode create reports the"
            " renamed rows; mode upsert plans them as updates (measured after the create-mode run, whose staging it"
            " leaves alone).",
            "",
            "| warehouse | mode | converge + change s (not part of the target) | select + check + plan + stage s |"
            " peak RSS MiB | converged | changed after done | taken | rejected | staged | plan | phases s |"
            " target (< 20 s, < 1 GiB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *steady_rows,
        ]
        out.append("")

    if "reconcile" in sections:
        from bench import reconcile_scale

        print("Reconciling 10 program management accounts of 1,000 relationships each ...", flush=True)
        r = reconcile_scale.run()
        drift = ", ".join(f"{kind} {n:,}" for kind, n in r.drift.items())
        out += [
            f"## Reconcile: {r.pmas} program management accounts, {r.relationships:,} relationships, at the read quota",
            "",
            "Each PMA filled to its quota of 1,000 relationships, every one a candidate's; then 1% deleted in AWS"
            " (as in the console) and 1% of the candidates renamed. The reconcile's own code (hook, shared read"
            f" schedule, retries) against the emulator at {r.read_rate:g} reads per second and"
            f" {reconcile_scale.LATENCY_MS} ms latency; PostgreSQL warehouse.",
            "",
            "| PMAs | relationships listed | pages | read rate /s | reconcile s | ideal s (pages ÷ rate) | s ÷ ideal |"
            " throttled | drift and reopened |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {r.pmas} | {r.relationships:,} | {r.pages} | {r.read_rate:g} | {r.seconds:.1f} | {r.ideal_seconds:.1f} |"
            f" {r.ratio:.2f} | {r.throttled} | {drift} |",
            "",
        ]

    if "quota" in sections:
        from bench import quota

        print(f"Running the sync and the alternatives on a local Airflow: N={args.n}, Q={args.quota:g} ...", flush=True)
        results = quota.run(args.n, args.quota)
        syncs = [r for r in results if r.name.startswith("sync DAG")]
        out += [
            f"## At the quota: N = {args.n}, Q = {args.quota:g} creates/s, {quota.LATENCY_MS} ms latency, "
            f"{quota.ERROR_RATE:.0%} injected 500s",
            "",
            *quota_table(results),
            "",
            "| sync row | creates/s ÷ Q ≥ 0.95 | throttled ≤ 1% | duplicates 0 | (run - start-up) ÷ (N/Q) ≤ 1.1 |",
            "|---|---|---|---|---|",
            *(
                f"| {r.name} | {mark(r.rate_ratio >= TARGETS['rate'])} | "
                f"{mark(r.throttled_share <= TARGETS['throttled'])} | {mark(r.duplicates == 0)} | "
                f"{mark(steady_ratio(r) <= TARGETS['run'])} |"
                for r in syncs
            ),
            "",
            "Start-up (trigger → first create) of each sync row's first run, s:",
            "",
            *(
                f"- {r.name}: {r.startup_seconds:.1f} = " + ", ".join(f"{k} {v}" for k, v in r.startup.items())
                for r in syncs
            ),
            "",
            *(
                f"Phases of the {r.name} (s): " + ", ".join(f"{k} {v}" for k, v in r.phases.items()) + "."
                for r in syncs
                if r.phases
            ),
            "",
            *(f"- {r.name}: {r.note}." for r in results if r.note),
            "",
        ]

    analysis = PROJECT_DIR / "bench" / "analysis.md"
    if analysis.exists():
        out += [analysis.read_text().strip(), ""]
    text = "\n".join(out)
    print("\n" + text)
    Path(args.output).write_text(text)
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
