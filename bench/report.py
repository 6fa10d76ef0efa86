"""Turning a run's results into its report: results.json, results.md, chart.png and the table.

- ``environment``: the machine, versions and settings a run measured with.
- ``targets``: the performance targets, judged from the measurements (again on --report-only):
  the catalogue read at N=1,000 at least as fast as the session-read ceiling, p50 at
  N=1,000,000 at most 1.3x that at N=1,000, the purchase at least 0.4x the session-read
  ceiling, at most one Redis command per authenticated read for the session, and at most 200
  bytes of Redis per session key; then the paired scenarios' (report_pairs.py): the
  scaled-out topology against the direct store, metrics on against off.
- ``markdown``, ``chart`` and ``print_table`` render a report; ``save`` writes its three files,
  each through a .tmp file so that a reader never sees half a result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from report_pairs import chart_panels, markdown_sections, pair_keys, pair_targets, print_tables
from scenarios import Bench, product_key
from servers import POSTGRES_ADMIN_URL, ROOT


def environment(args: argparse.Namespace, bench: Bench) -> dict:
    def first_line(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with psycopg.connect(POSTGRES_ADMIN_URL) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0]
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "app", "config.py"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    from importlib.metadata import version

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + (" with uncommitted app changes" if dirty else ""),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgres": postgres,
        "redis": bench.redis.info("server")["redis_version"],
        "wrk": first_line(["wrk", "--version"]).split(" [")[0],
        "gunicorn": version("gunicorn"),
        "flask": version("flask"),
        "flask_session": version("flask-session"),
        "gunicorn_args": " ".join(bench.gunicorn_args()),
        "wrk_args": f"-t {args.wrk_threads} -c {args.connections} -d {args.duration}s --timeout 10s",
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeat": args.repeat,
        "pair_repeat": args.pair_repeat,
        "sizes": args.sizes,
        "smoke": args.smoke,
        "quiet_below": args.quiet_below,
    }


def order(results: dict) -> list[str]:
    keys = [
        "ceiling_json",
        "ceiling_session",
        *sorted(k for k in results if k.startswith("products_")),
        "purchase",
    ]
    return [k for k in keys if k in results]


def session_ratio(results: dict, key: str) -> float:
    """A scenario's req/s over the session ceiling's: the median of its runs' ratios to the
    ceiling run just before each, where it was measured so; else to the ceiling's own runs."""
    result = results[key]
    if "paired_ratio_runs" in result:
        return statistics.median(result["paired_ratio_runs"])
    return result["rps"] / results["ceiling_session"]["rps"]


def targets(results: dict, session_bytes: dict, sizes: list[int]) -> list[dict]:
    small, large = product_key(min(sizes)), product_key(max(sizes))
    rows = []

    def row(text, value, goal, met):
        rows.append({"target": text, "measured": value, "goal": goal, "met": met})

    if "products_1000" in results:
        ratio = session_ratio(results, "products_1000")
        row(
            "GET /products?limit=50 at N=1,000: req/s vs the session-read ceiling",
            f"{ratio:.3f}x",
            ">= 1.0x",
            ratio >= 1.0,
        )
    if "products_1000" in results and "products_1000000" in results:
        ratio = results["products_1000000"]["p50_us"] / results["products_1000"]["p50_us"]
        row("p50 at N=1,000,000 vs N=1,000", f"{ratio:.2f}x", "<= 1.3x", ratio <= 1.3)
    elif small != large:
        ratio = results[large]["p50_us"] / results[small]["p50_us"]
        row(f"p50 at N={max(sizes):,} vs N={min(sizes):,}", f"{ratio:.2f}x", "<= 1.3x", ratio <= 1.3)
    else:
        row("p50 at N=1,000,000 vs N=1,000", "not run (--smoke)", "<= 1.3x", None)
    ratio = session_ratio(results, "purchase")
    # Three decimals: at two, 0.395 would read as a met 0.40.
    row("POST /purchase: req/s vs the session-read ceiling", f"{ratio:.3f}x", ">= 0.4x", ratio >= 0.4)
    reads = [results[k]["session_commands_per_request"] for k in results if k.startswith("products_")]
    worst = max(reads)
    # Judged at two decimals: a connection's HELLO and redis-py's idle health-check PING add
    # a few per ten thousand requests.
    row(
        "Redis commands per authenticated read for the session (GET /products; the page cache's HGET apart)",
        f"{worst:.3f}",
        "<= 1",
        round(worst, 2) <= 1.0,
    )
    size = session_bytes["store"]["memory_usage"]
    row("Redis bytes per session key (store)", f"{size}", "<= 200", size <= 200)
    return rows + pair_targets(results)


def commands_text(calls: dict, requests: int) -> str:
    def per_request(count: int) -> str:
        value = count / max(1, requests)
        return f"{value:.2f}" if value >= 0.01 else f"{value:.4f}"

    parts = [
        f"{name.upper()} {per_request(count)}"
        for name, count in sorted(calls.items(), key=lambda item: -item[1])
    ]
    return ", ".join(parts) or "none"


def markdown(report: dict) -> str:
    env, results = report["environment"], report["results"]
    json_rps = results["ceiling_json"]["rps"]
    lines = [
        "# Store API benchmark" + (" (smoke run: checks the harness, not speed)" if env["smoke"] else ""),
        "",
        f"{env['date']}, commit {env['commit']}. {env['cpus']} CPUs ({env['cpu']}); Python {env['python']}, "
        f"PostgreSQL {env['postgres']}, Redis {env['redis']}, {env['wrk']}, gunicorn {env['gunicorn']}, "
        f"Flask {env['flask']}, Flask-Session {env['flask_session']}. Everything on this one machine.",
        "",
        f"gunicorn `{env['gunicorn_args']}` for every app; wrk `{env['wrk_args']}`, after a "
        f"{env['warmup_s']} s warm-up; of {env['repeat']} runs, the one with the median req/s is shown "
        "(among those that other work on the machine did not disturb).",
        "",
        "| scenario | req/s | p50 ms | p99 ms | x JSON ceiling | x session ceiling | Redis cmds/req "
        "| Redis commands per request | app CPU ms/req | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for key in order(results):
        r = results[key]
        lines.append(
            f"| {r['label']} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} "
            f"| {r['rps'] / json_rps:.2f} | {session_ratio(results, key):.3f} "
            f"| {r['redis_commands_per_request']:.2f} "
            f"| {commands_text(r['redis_calls'], r['sent'])} | {r['app_cpu_ms_per_request']:.2f} "
            f"| {r['status_errors']} |"
        )
    noisy = [
        f"{results[k]['label']} ({results[k]['cpu_busy_before']:.0%} before, "
        f"{results[k]['other_cpu_share']:.0%} during)"
        for k in order(results) + pair_keys(results)
        if max(results[k]["cpu_busy_before"], results[k]["other_cpu_share"]) > env["quiet_below"]
    ]
    if noisy:
        lines += [
            "",
            f"**Noisy:** other work on the machine used more than {env['quiet_below']:.0%} of the CPUs "
            f"just before or during: {'; '.join(noisy)}. Those req/s and latencies are low; the CPU "
            "per request is still comparable. Run again on a quiet machine.",
        ]
    sb = report["session_bytes"]
    lines += [
        "",
        "Redis bytes per session key (`MEMORY USAGE session:<sid> SAMPLES 0`): "
        f"store **{sb['store']['memory_usage']}** (key {sb['store']['key_length']} + value "
        f"{sb['store']['value_length']} bytes); default Flask-Session "
        f"**{sb['ceiling_session']['memory_usage']}** (key {sb['ceiling_session']['key_length']} + value "
        f"{sb['ceiling_session']['value_length']} bytes).",
        "",
    ]
    check = report["checks"]["zero_oversell"]
    lines.append(
        f"Zero oversell after the purchase runs: stock removed {check['stock_removed']:,} = units purchased "
        f"{check['units_purchased']:,} ({check['purchases']:,} purchases; wrk counted {check['wrk_2xx']:,} "
        f"2xx, the rest were still in flight when wrk stopped); stock left {check['stock_after']:,}: "
        f"**{'OK' if check['ok'] else 'FAILED'}**."
    )
    lines.append("")
    loads = ", ".join(
        f"N={load['n']:,}{' into ' + load['into'] if load.get('into') else ''}: "
        f"{load['inserted']:,} rows in {load['insert_s']:.1f} s ({load['total_s']:.1f} s with VACUUM ANALYZE)"
        for load in report["loads"]
    )
    lines += [f"Catalogue loads (one `INSERT ... SELECT generate_series`): {loads}.", ""]
    lines += [
        "x ceiling: req/s divided by the ceiling's. For the store's scenarios, x session ceiling pairs "
        "runs: the session ceiling (left running) is measured just before each of the scenario's runs, "
        "and the median of the runs' ratios is shown, so that the machine's drift between minutes "
        "does not decide it. Redis commands: per request the server handled "
        "(INFO commandstats after CONFIG RESETSTAT), including the commands a script runs: "
        "a purchase's EVAL and the four commands of its script are one round trip. app CPU: "
        "user + system CPU of gunicorn's "
        "processes per request, which other load on the machine does not inflate as it does latency; "
        "results.json also has PostgreSQL's, Redis's and wrk's, and the share of the CPUs other work "
        "used during each run.",
        "",
    ]
    lines += markdown_sections(report)
    lines += ["## Targets", "", "| target | measured | goal | met |", "| --- | ---: | ---: | :---: |"]
    for t in report["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['measured']} | {t['goal']} | {met} |")
    lines += ["", "![requests/s and latency per scenario](chart.png)", ""]
    return "\n".join(lines)


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    keys = order(results)
    labels = [
        results[k]["label"]
        .replace("ceiling: ", "ceiling:\n")
        .replace("default Flask-Session read", "Flask-Session read")
        .replace(", ", "\n")
        .replace("?", "\n?")
        for k in keys
    ]
    rps = [results[k]["rps"] for k in keys]
    colors = ["#9e9e9e" if k.startswith("ceiling") else "#1f77b4" for k in keys]
    session_rps = results["ceiling_session"]["rps"]

    # A second row for the paired scenarios, when the report has them.
    paired = bool(pair_keys(results))
    fig = plt.figure(figsize=(14, 11 if paired else 5.5))
    grid = fig.add_gridspec(2 if paired else 1, 6)
    left, right = fig.add_subplot(grid[0, :3]), fig.add_subplot(grid[0, 3:])
    if paired:
        chart_panels([fig.add_subplot(grid[1, 2 * i : 2 * i + 2]) for i in range(3)], results)
    bars = left.bar(range(len(keys)), rps, color=colors)
    left.axhline(
        session_rps,
        color="#d62728",
        linestyle="--",
        linewidth=1,
        label=f"session-read ceiling ({session_rps:,.0f} req/s)",
    )
    left.axhline(
        0.4 * session_rps,
        color="#d62728",
        linestyle=":",
        linewidth=1,
        label="0.4x the session-read ceiling (the purchase target)",
    )
    for bar, value, key in zip(bars, rps, keys, strict=True):
        left.annotate(
            f"{value:,.0f}\n{session_ratio(results, key):.3f}x",
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    left.set_xticks(range(len(keys)), labels, fontsize=8)
    left.set_ylabel("requests/s")
    left.set_ylim(0, max(rps) * 1.2)
    left.set_title("Throughput (grey: ceilings)")
    left.legend(loc="upper right", fontsize=8)

    width = 0.38
    p50 = [results[k]["p50_us"] / 1000 for k in keys]
    p99 = [results[k]["p99_us"] / 1000 for k in keys]
    positions = range(len(keys))
    right.bar([p - width / 2 for p in positions], p50, width, label="p50", color="#1f77b4")
    right.bar([p + width / 2 for p in positions], p99, width, label="p99", color="#ff7f0e")
    for p, a, b in zip(positions, p50, p99, strict=True):
        right.annotate(f"{a:.1f}", (p - width / 2, a), ha="center", va="bottom", fontsize=7)
        right.annotate(f"{b:.1f}", (p + width / 2, b), ha="center", va="bottom", fontsize=7)
    right.set_xticks(list(positions), labels, fontsize=8)
    right.set_ylabel("latency, ms")
    right.set_title("Latency at fixed concurrency")
    right.legend(fontsize=8)

    env = report["environment"]
    fig.suptitle(
        f"Store API under gunicorn {env['gunicorn_args']}; wrk {env['wrk_args']}"
        + (" (smoke)" if env["smoke"] else ""),
        fontsize=10,
    )
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, path)
    plt.close(fig)


def write(path: Path, data: bytes | str) -> None:
    """Write through a .tmp file so that a reader never sees half a result."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def print_table(report: dict) -> None:
    results = report["results"]
    json_rps = results["ceiling_json"]["rps"]
    head = (
        f"{'scenario':<50} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'xJSON':>6} {'xSess':>6} "
        f"{'Redis/req':>9}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for key in order(results):
        r = results[key]
        print(
            f"{r['label']:<50} {r['rps']:>9,.0f} {r['p50_us'] / 1000:>8.2f} {r['p99_us'] / 1000:>8.2f} "
            f"{r['rps'] / json_rps:>6.2f} {session_ratio(results, key):>6.3f} "
            f"{r['redis_commands_per_request']:>9.3f}"
        )
    sb = report["session_bytes"]
    print(
        f"\nRedis bytes per session key: store {sb['store']['memory_usage']}, "
        f"default Flask-Session {sb['ceiling_session']['memory_usage']}"
    )
    print_tables(report)
    for t in report["targets"]:
        met = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
        print(f"target: {t['target']}: {t['measured']} (goal {t['goal']}): {met}")


def judge_again(report: dict) -> None:
    """Judge the targets of a stored report again from its measurements, so that a change to
    how targets read shows."""
    sizes = sorted(
        int(key.removeprefix("products_")) for key in report["results"] if key.startswith("products_")
    )
    report["targets"] = targets(report["results"], report["session_bytes"], sizes)


def save(report: dict, out: Path) -> None:
    """Write results.json, results.md and chart.png to `out`."""
    write(out / "results.json", json.dumps(report, indent=2) + "\n")
    write(out / "results.md", markdown(report))
    chart(report, out / "chart.png")
