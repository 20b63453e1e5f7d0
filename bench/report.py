"""The benchmark's Markdown report: the results table, the goals, the notes on the method, the
details table, failures, py-spy profiles, the idle and run lines."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from bench.measure import BUSY_WARNING, psutil
from bench.scenarios import CHUNKS, LITELLM_PEERS, WORKERS, Result, Run

GOAL_CPU_JSON_MS = 1.0
GOAL_CPU_STREAM_MS = 2.0
GOAL_ADDED_P50_MS = 1.0
GOAL_RSS_MB = 150.0
GOAL_RECEIPT_P50_MS = 1.5  # Healthcare (H) over Pro (B), the same call
GOAL_RECEIPT_CPU_MS = 1.0
GOAL_ANTHROPIC_STREAM_RATIO = 2.0  # gateway CPU per Anthropic-translated stream (F) / E
GOAL_LITELLM_JSON_RATIO = 20.0  # LiteLLM's CPU per request (LB) / the gateway's (B), at least
GOAL_LITELLM_STREAM_RATIO = 30.0  # the same per 20-chunk stream (LE / E)


def num(value: float | None, digits: int = 1) -> str:
    """A number of the report, ``-`` when there is none."""
    return "-" if value is None else f"{value:,.{digits}f}"


def report(run: Run, args: argparse.Namespace) -> tuple[str, bool]:
    """The Markdown report, and whether the run was clean (no failure at all)."""
    results = run.results
    by_key = {r.scenario.key: r for r in results}
    lines = results_table(run)
    lines += ["", "Goals:", ""]
    lines += goal_lines(results, by_key)
    lines.append(anthropic_goal(by_key.get("F"), by_key.get("E")))
    lines += receipt_goals(by_key.get("H"), by_key.get("B"))
    lines += litellm_goals(by_key, run)
    lines += method_notes(run, by_key)
    lines += details_table(results)
    lines += failure_lines(results)
    lines += profile_lines(results)
    lines += ["", idle_line(run), "", run_line(run, args)]
    clean = all(r.outcome.failed == 0 and r.warmup.failed == 0 and not r.backlog for r in results)
    return "\n".join(lines) + "\n", clean


def results_table(run: Run) -> list[str]:
    """The main table: throughput, latency and CPU per request of each scenario."""
    lines = [
        "| scenario | req/s | p50 ms | p99 ms | TTFB p50 ms (streams) | gateway CPU ms/request "
        "| flusher CPU ms/request | total (gateway + flusher) CPU ms/request "
        "| RSS MB per worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in run.results:
        s = r.scenario
        cpu, flusher, total = _cpu_cells(run, r)
        lines.append(
            f"| {s.label} | {r.rps:,.0f} | {num(r.p(0.5), 2)} | {num(r.p(0.99), 2)} "
            f"| {num(r.ttfb(0.5), 2) if s.stream else '-'} | {cpu} | {flusher} | {total} "
            f"| {' / '.join(f'{mb:.0f}' for mb in r.rss_mb) or '-'} |"
        )
    return lines


def _cpu_cells(run: Run, r: Result) -> tuple[str, str, str]:
    """The server, flusher and total CPU cells of a row: the flusher is the gateway's."""
    cpu = num(r.server_cpu_ms, 2)
    if r.scenario.target == "mock":
        return cpu + " (mock)", "-", "-"
    if r.scenario.target == "litellm":
        return cpu + " (LiteLLM)", "-", num(r.total_cpu_ms, 2)
    flusher = "in workers" if run.flush_in_workers else num(r.flusher_cpu_ms, 2)
    return cpu, flusher, num(r.total_cpu_ms, 2)


def goal_lines(results: list[Result], by_key: dict[str, Result]) -> list[str]:
    """The goal lines of the gateway alone: CPU per request, added latency, memory."""
    b, e, c, c0 = (by_key.get(k) for k in ("B", "E", "C", "C0"))
    added = None
    if c and c0 and c.p(0.5) is not None and c0.p(0.5) is not None:
        added = c.p(0.5) - c0.p(0.5)  # type: ignore[operator]
    rss = [mb for r in results if r.scenario.target == "gateway" for mb in r.rss_mb]
    # (name, the result whose flusher share is shown, value, goal, unit)
    goals: list[tuple[str, Result | None, float | None, float, str]] = [
        (
            "gateway CPU per non-streaming request at 10 clients (B)",
            b,
            b.server_cpu_ms if b else None,
            GOAL_CPU_JSON_MS,
            "ms",
        ),
        (
            "gateway CPU per 20-chunk stream at 10 clients (E)",
            e,
            e.server_cpu_ms if e else None,
            GOAL_CPU_STREAM_MS,
            "ms",
        ),
        (
            "added p50 latency at 1 client (C gateway - C mock)",
            None,
            added,
            GOAL_ADDED_P50_MS,
            "ms",
        ),
        ("peak RSS per gateway worker", None, max(rss) if rss else None, GOAL_RSS_MB, "MB"),
    ]
    lines = []
    for name, result, value, limit, unit in goals:
        verdict = "n/a" if value is None else ("**pass**" if value <= limit else "**MISS**")
        line = f"- {name}: {num(value, 2)} {unit} (goal ≤ {limit} {unit}): {verdict}"
        if result is not None and result.flusher_cpu_ms is not None:
            line += (
                f"; with the flusher process {num(result.total_cpu_ms, 2)} {unit} "
                f"({num(result.flusher_cpu_ms, 2)} {unit} of it in run_flusher)"
            )
        lines.append(line)
    return lines


def method_notes(run: Run, by_key: dict[str, Result]) -> list[str]:
    """How the numbers were measured, what the details table holds, and its header."""
    shape = (
        "The gateway workers write the traces themselves (`--flush-in-workers`): their CPU "
        "includes the PostgreSQL writes."
        if run.flush_in_workers
        else "Production shape: `AQTA_FLUSH_IN_WORKERS=false`, one `manage.py run_flusher` process "
        "writes the traces. The goals are judged on the gateway process tree (uvicorn master + "
        "workers), as the goals are stated; the flusher's CPU is not in it but is shown next to "
        "it (flusher, total) and must be paid for too."
    )
    return [
        "",
        shape + " CPU is measured over the load phase plus the catch-up: until every trace of the "
        "phase is in PostgreSQL (entries added to the `aqta:traces` stream = requests sent, and "
        "the stream empty).",
        "",
        "Details: where the gateway's CPU goes (event-loop threads of the workers, their other "
        "threads such as `to_thread` trace writes when the workers flush, the uvicorn master); "
        "CPU per request of the mock (behind the gateway and LiteLLM too) and of this load "
        "generator; rest = "
        "every other process (Redis, PostgreSQL, anything else running); catch-up = seconds "
        "from the end of the load until the traces were stored; machine busy = share of all "
        "CPUs in use during the load (without the catch-up); Redis CPU (INFO cpu) and the time of "
        "its admission script (EVALSHA, INFO commandstats) are server-wide; traces per flush "
        "batch = requests / XACK calls.",
        *litellm_notes(run, by_key),
        "",
        "| scenario | N | gateway (or LiteLLM) CPU: event loops / other threads / master, "
        "ms/request "
        "| mock CPU ms/request | client CPU ms/request | rest CPU ms/request "
        "| Redis CPU µs/request | Redis µs per admission | traces per flush batch "
        "| catch-up s | machine busy | failures (warm-up) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]


def details_table(results: list[Result]) -> list[str]:
    """The rows of the details table (its header ends :func:`method_notes`)."""
    lines = []
    for r in results:
        batch = "-"
        if r.trace_batches and r.scenario.target == "gateway":
            batch = f"{r.outcome.n / r.trace_batches:.1f}"
        catch = num(r.catch_up_s, 1)
        if r.backlog:
            catch = f"**{r.backlog} traces not stored after {catch}**"
        lines.append(
            f"| {r.scenario.label} | {r.outcome.n} "
            f"| {' / '.join(f'{max(ms, 0):.2f}' for ms in r.split_ms) if r.split_ms else '-'} "
            f"| {num(r.mock_cpu_ms, 2)} "
            f"| {num(r.client_cpu_ms, 2)} | {num(max(r.other_cpu_ms, 0.0), 2)} "
            f"| {r.redis_cpu_us:.0f} | {num(r.admit_us, 0)} "
            f"| {batch} | {catch} "
            f"| {100 * r.machine_busy:.0f} % "
            f"| {r.outcome.failed} ({r.warmup.failed}) |"
        )
    return lines


def failure_lines(results: list[Result]) -> list[str]:
    """The failed requests of each phase, with examples, and the traces never stored."""
    lines = []
    failures = [(r, o) for r in results for o in (r.warmup, r.outcome) if o.failed]
    if failures:
        lines += ["", "**THIS RUN HAD ERRORS; its numbers do not describe a working gateway.**", ""]
        for r, o in failures:
            phase = "warm-up" if o is r.warmup else "measured"
            counts = ", ".join(f"{reason}: {count}" for reason, count in o.failures.items())
            lines.append(f"- {r.scenario.label} ({phase}): {counts}")
            lines += [f"    - `{example}`" for example in o.examples]
    backlogs = [r for r in results if r.backlog]
    if backlogs:
        lines += ["", "**Traces were still not in PostgreSQL when the catch-up gave up:**", ""]
        lines += [f"- {r.scenario.label}: {r.backlog}" for r in backlogs]
    return lines


def profile_lines(results: list[Result]) -> list[str]:
    """The py-spy profiles taken (``--profile``): own time, then the project's functions."""
    lines = []
    for r in results:
        litellm = r.scenario.target == "litellm"
        for what, profile in (
            ("the LiteLLM worker" if litellm else "one gateway worker", r.profile),
            ("the flusher process", r.flusher_profile),
        ):
            if profile is None or not profile.samples:
                continue
            samples = profile.samples
            lines += [
                "",
                f"py-spy, {what} during {r.scenario.label} and its catch-up ({samples} samples, "
                f"all threads): own time, then {'LiteLLM' if litellm else 'Aqta'}'s functions by "
                "inclusive time:",
                "",
            ]
            lines += [f"- {100 * count / samples:5.1f} %  {name}" for name, count in profile.own]
            lines.append("")
            lines += [
                f"- {100 * count / samples:5.1f} %  {name}" for name, count in profile.project
            ]
    return lines


def idle_line(run: Run) -> str:
    """The CPU the servers use without load, and how busy the machine was before the run."""
    flusher_idle = (
        ""
        if run.flusher_idle_ms_per_s is None
        else f", flusher process {num(run.flusher_idle_ms_per_s, 1)} ms per second"
    )
    return (
        f"CPU without load: gateway (its flusher loops, refreshes) "
        f"{num(run.gateway_idle_ms_per_s, 1)} ms per second{flusher_idle}; "
        f"machine busy before the run: {100 * run.busy_before:.0f} %"
        + (
            " (**other processes were running: numbers perturbed**)"
            if run.busy_before > BUSY_WARNING
            else ""
        )
        + "."
    )


def run_line(run: Run, args: argparse.Namespace) -> str:
    """When and how the run was made: the machine, the shape, where the CPU numbers come from."""
    mode = "quick" if args.quick else "full"
    cpu_source = "psutil" if psutil is not None else "/proc"
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {mode} run, {os.cpu_count()} CPUs, "
        f"{WORKERS} gateway workers (1 in B1, E1), "
        + (
            "traces written by the workers (AQTA_FLUSH_IN_WORKERS=true)"
            if run.flush_in_workers
            else "AQTA_FLUSH_IN_WORKERS=false + 1 run_flusher process"
        )
        + f", mock with {CHUNKS} chunks and no latency, CPU from "
        f"{cpu_source} (gateway = process tree: uvicorn master + workers), RSS = VmHWM"
        + (
            f", LiteLLM {run.litellm_version or '(version unknown)'} with 1 worker"
            if any(r.scenario.target == "litellm" for r in run.results)
            else ""
        )
        + (", **py-spy attached (CPU numbers perturbed)**" if args.profile else "")
        + "."
    )


TIMES = "\u00d7"  # the multiplication sign, which ruff would take for an x in a literal


def _ratio_verdict(ratio: float, goal: float) -> str:
    return "**pass**" if ratio >= goal else "**MISS**"


def litellm_goals(by_key: dict[str, Result], run: Run) -> list[str]:
    """The goal lines LiteLLM ÷ gateway, CPU per request, JSON and stream: judged on the gateway
    with the flusher process (what a request costs in all) and on the gateway alone."""
    lines = []
    for key, what, goal in (
        ("LB", "non-streaming request", GOAL_LITELLM_JSON_RATIO),
        ("LE", "20-chunk stream", GOAL_LITELLM_STREAM_RATIO),
    ):
        aqta_key, one_key = LITELLM_PEERS[key]
        name = f"LiteLLM's CPU per {what} at 10 clients ÷ the gateway's ({key} ÷ {aqta_key})"
        peer, aqta, one = by_key.get(key), by_key.get(aqta_key), by_key.get(one_key)
        if peer is None or peer.server_cpu_ms is None or aqta is None or not aqta.server_cpu_ms:
            why = f"needs {key} and {aqta_key}"
            if run.litellm_skipped:
                why += f"; {run.litellm_skipped}"
            lines.append(f"- {name}: n/a ({why})")
            continue
        litellm_ms = peer.server_cpu_ms
        bases: list[tuple[str, float]] = []
        if aqta.flusher_cpu_ms is not None and aqta.total_cpu_ms:
            bases.append(("with the flusher process", aqta.total_cpu_ms))
        bases.append(
            (
                "alone" if aqta.flusher_cpu_ms is not None else "(its workers write the traces)",
                aqta.server_cpu_ms,
            )
        )
        parts = [
            f"÷ the gateway {label} {ms:.2f} ms = {litellm_ms / ms:.1f}{TIMES} "
            f"(goal ≥ {goal:.0f}{TIMES}): {_ratio_verdict(litellm_ms / ms, goal)}"
            for label, ms in bases
        ]
        line = f"- {name}: LiteLLM {litellm_ms:.2f} ms; " + "; ".join(parts)
        if one is not None and one.server_cpu_ms:
            ones = []
            if one.flusher_cpu_ms is not None and one.total_cpu_ms:
                ones.append(f"{litellm_ms / one.total_cpu_ms:.1f}{TIMES} with the flusher")
            alone = " alone" if one.flusher_cpu_ms is not None else ""
            ones.append(f"{litellm_ms / one.server_cpu_ms:.1f}{TIMES}{alone}")
            line += f"; against the gateway at 1 worker ({one_key}): {', '.join(ones)}"
        lines.append(line)
    return lines


def litellm_notes(run: Run, by_key: dict[str, Result]) -> list[str]:
    """What the LiteLLM rows are, or why they are missing."""
    if not any(r.scenario.target == "litellm" for r in run.results):
        if run.litellm_skipped:
            return ["", f"**No LiteLLM rows**: {run.litellm_skipped}."]
        return []
    lines = [
        "",
        f"LiteLLM rows: the LiteLLM proxy {run.litellm_version or '(version unknown)'} "
        "(`bench/litellm-requirements.txt`, installed into `.venv/litellm`), `litellm --config` "
        "with 1 worker (uvicorn, uvloop, httptools, as the gateway runs), no database (no "
        "DATABASE_URL: it stores no spend log, key or budget), its master key as the only key "
        "(it refuses to start without one; no database, so the key check is a comparison in "
        "memory), no callbacks, message logging, spend and error logs off, log level WARNING "
        "(no access log, as the gateway runs), its packaged model price map and other files "
        "(it fetches nothing at start-up), a clean environment; model `openai/gpt-4o-mini` with "
        "`api_base` = the mock's `/v1` and a fake key. Same load generator, request bodies and "
        "N as B and E; its CPU is its process tree, measured as the gateway's, and its total "
        "is that tree (it has no other process; the gateway's total includes writing every "
        "trace to PostgreSQL). LiteLLM runs 1 worker, the gateway 2 in B and E; CPU per request "
        "hardly depends on the worker count, and B1, E1 measure the gateway at 1 worker too "
        "(after the others, beside LiteLLM). The ratio goals are judged on B and E.",
    ]
    if run.litellm_skipped:
        lines += ["", f"**LiteLLM rows incomplete**: {run.litellm_skipped}."]
    return lines


def anthropic_goal(f: Result | None, e: Result | None) -> str:
    """The goal line F ≤ 2 E: the Anthropic translation costs at most twice the pass-through."""
    name = (
        "gateway CPU per Anthropic-translated stream within 2\u00d7 of the OpenAI pass-through "
        "stream (F ≤ 2 \u00d7 E)"
    )
    if f is None or e is None or f.server_cpu_ms is None or not e.server_cpu_ms:
        return f"- {name}: n/a (needs F and E)"
    ratio = f.server_cpu_ms / e.server_cpu_ms
    verdict = "**pass**" if ratio <= GOAL_ANTHROPIC_STREAM_RATIO else "**MISS**"
    line = (
        f"- {name}: F {num(f.server_cpu_ms, 2)} ms, E {num(e.server_cpu_ms, 2)} ms, "
        f"F/E {ratio:.2f} (goal ≤ {GOAL_ANTHROPIC_STREAM_RATIO}): {verdict}"
    )
    if f.total_cpu_ms is not None and e.total_cpu_ms and f.flusher_cpu_ms is not None:
        line += (
            f"; with the flusher process F {num(f.total_cpu_ms, 2)} ms, "
            f"E {num(e.total_cpu_ms, 2)} ms, F/E {f.total_cpu_ms / e.total_cpu_ms:.2f}"
        )
    return line


def receipt_goals(h: Result | None, b: Result | None) -> list[str]:
    """The goal lines H - B: what a Healthcare call's receipt (signed, stored before the
    answer) adds to the same call on Pro, at 10 clients."""
    name = "Healthcare receipt over the same call on Pro (H - B)"
    if h is None or b is None:
        return [f"- {name}: n/a (needs H and B)"]
    lines = []
    hp, bp = h.p(0.5), b.p(0.5)
    for what, value, goal in (
        ("p50 latency", None if hp is None or bp is None else hp - bp, GOAL_RECEIPT_P50_MS),
        (
            "gateway CPU per request",
            None
            if h.server_cpu_ms is None or b.server_cpu_ms is None
            else h.server_cpu_ms - b.server_cpu_ms,
            GOAL_RECEIPT_CPU_MS,
        ),
    ):
        verdict = "n/a" if value is None else ("**pass**" if value <= goal else "**MISS**")
        lines.append(f"- {name}, {what}: +{num(value, 2)} ms (goal ≤ +{goal} ms): {verdict}")
    return lines
