"""The report of the paired scenarios (topology_scenarios.py): the scaled-out topology against the
direct store, and the store with metrics on against metrics off.

- ``pair_targets``: at -c 16 the topology at least 0.85x the direct store's req/s for the
  catalogue read and the purchase; at -c 256, for both the direct store and the topology, no
  errors (non-2xx or socket errors, in any measured run), no request starved (p99 at most 1.5x
  the wait the throughput implies, 256 / req/s) and the catalogue read's p99 under 150 ms;
  metrics on at least 0.95x metrics off.
- ``markdown_sections``, ``print_tables`` and ``chart_panels`` render them, each only for the
  scenarios a report has (an older results.json has none).
"""

from __future__ import annotations

import statistics

from topology_scenarios import CONCURRENCY, METRICS_KEYS, ROUTES, STORES, scale_key

LOW, HIGH = min(CONCURRENCY), max(CONCURRENCY)
SCALE_GOAL, METRICS_GOAL, STARVED, READ_P99_MS = 0.85, 0.95, 1.5, 150


def scale_keys(results: dict) -> list[str]:
    keys = [scale_key(s, route, c) for route in ROUTES for c in CONCURRENCY for s in STORES]
    return [k for k in keys if k in results]


def pair_keys(results: dict) -> list[str]:
    return [k for k in METRICS_KEYS if k in results] + scale_keys(results)


def ratio(result: dict) -> float:
    """A compared scenario's req/s over its baseline's: the median of its pairs' ratios."""
    return statistics.median(result["baseline_ratio_runs"])


def implied_wait_ms(result: dict) -> float:
    """How long a request waits, on average, at the run's concurrency and throughput."""
    return 1000 * result["connections"] / result["rps"]


def starvation(result: dict) -> float:
    return result["p99_us"] / 1000 / implied_wait_ms(result)


def errors(result: dict) -> tuple[int, int]:
    """Non-2xx and socket errors, in all the measured runs."""
    return sum(result["status_errors_runs"]), sum(result["socket_errors_runs"])


def pair_targets(results: dict) -> list[dict]:
    rows = []

    def row(text, value, goal, met):
        rows.append({"target": text, "measured": value, "goal": goal, "met": met})

    for route in ROUTES:
        key = scale_key("topology", route, LOW)
        if key in results:
            value = ratio(results[key])
            label = results[key]["label"]
            row(
                f"{label}: req/s vs the direct store",
                f"{value:.3f}x",
                f">= {SCALE_GOAL}x",
                value >= SCALE_GOAL,
            )
    for store, name in STORES.items():
        keys = [scale_key(store, route, HIGH) for route in ROUTES]
        if not all(k in results for k in keys):
            continue
        status, sockets = (sum(counts) for counts in zip(*(errors(results[k]) for k in keys), strict=True))
        row(
            f"{name}, -c {HIGH}: non-2xx and socket errors (GET /products and POST /purchase, every run)",
            f"{status} + {sockets}",
            "0",
            status + sockets == 0,
        )
        for key in keys:
            r = results[key]
            value = starvation(r)
            row(
                f"{r['label']}: p99 vs the wait its throughput implies ({HIGH} / req/s)",
                f"{r['p99_us'] / 1000:.0f} / {implied_wait_ms(r):.0f} ms = {value:.2f}x",
                f"<= {STARVED}x",
                value <= STARVED,
            )
        read = results[keys[0]]
        p99 = read["p99_us"] / 1000
        row(f"{read['label']}: p99", f"{p99:.1f} ms", f"< {READ_P99_MS} ms", p99 < READ_P99_MS)
    if METRICS_KEYS[1] in results:
        value = ratio(results[METRICS_KEYS[1]])
        row(
            f"{results[METRICS_KEYS[1]]['label']}, -c {results[METRICS_KEYS[1]]['connections']}: "
            "req/s vs metrics off (METRICS_ENABLED=0)",
            f"{value:.3f}x",
            f">= {METRICS_GOAL}x",
            value >= METRICS_GOAL,
        )
    return rows


def cell_ratio(results: dict, key: str) -> str:
    return f"{ratio(results[key]):.3f}" if "baseline_ratio_runs" in results[key] else ""


def answered(report: dict) -> str:
    """What GET /metrics answered each server: whether the app honoured METRICS_ENABLED=0."""
    statuses = report["checks"].get("metrics", {}).get("metrics_status")
    if not statuses:
        return ""
    return " GET /metrics answered " + ", ".join(f"{s} with {w}" for w, s in statuses.items()) + "."


def markdown_sections(report: dict) -> list[str]:
    results, env = report["results"], report["environment"]
    lines = []
    warmup = "no warm-up (smoke)" if env["smoke"] else f"after a {env['warmup_s']} s warm-up of each"
    runs = (
        f"{warmup}, of {env.get('pair_repeat', '?')} runs of each server, alternating with the other's "
        "(which goes first alternates too), the one with the median req/s is shown"
    )
    if keys := scale_keys(results):
        lines += [
            "## Scaled out",
            "",
            "deploy/topology.py on free ports: HAProxy -> (Unix sockets) 2 gunicorn instances of 2 sync "
            "workers each (4 workers, as the direct store's) -> PgBouncer (transaction pooling) -> the same "
            "PostgreSQL server (a database of its own), Redis and a replica under 3 Sentinels; set up "
            f"through HAProxy as the direct store is, its catalogue loaded to the same N. wrk "
            f"`-t 1 -c {LOW}` and `-t 2 -c {HIGH}`, `--timeout 10s`; {runs}. x direct: the median of the "
            f"runs' ratios to the direct store's run beside each. Wait implied: {HIGH} (or {LOW}) "
            "connections / req/s, what a request waits on average; p99 far above it means some requests "
            "are starved. Errors: in all measured runs. Redis commands are the primary's, without "
            "Sentinel's, the replica's and the health checks' (PING).",
            "",
            "| scenario | req/s | p50 ms | p99 ms | x direct | wait implied ms | p99 / wait "
            "| app CPU ms/req | proxies CPU ms/req | Redis cmds/req | non-2xx | socket errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for key in keys:
            r = results[key]
            status, sockets = errors(r)
            proxy = f"{r['proxy_cpu_ms_per_request']:.2f}" if "proxy_cpu_ms_per_request" in r else ""
            lines.append(
                f"| {r['label']} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} "
                f"| {cell_ratio(results, key)} | {implied_wait_ms(r):.1f} | {starvation(r):.2f} "
                f"| {r['app_cpu_ms_per_request']:.2f} | {proxy} | {r['redis_commands_per_request']:.2f} "
                f"| {status} | {sockets} |"
            )
        lines.append("")
    if all(k in results for k in METRICS_KEYS):
        lines += [
            "## The cost of metrics",
            "",
            "Two gunicorns of the store started for this scenario, the same settings, database and Redis, "
            "one with `METRICS_ENABLED=0` (request instrumentation and /metrics off), one with metrics "
            "on. Both are driven at the same time, a wrk `-t 1 -c "
            f"{results[METRICS_KEYS[0]]['connections']}` each, {warmup}, in {env.get('pair_repeat', '?')} "
            "runs, the one with the median req/s shown: they share every moment of the machine, so their "
            "ratio is steadier than that of runs one after the other, and each gets about half of it. "
            f"x metrics off: the median of the runs' ratios.{answered(report)}",
            "",
            "| scenario | req/s | p50 ms | p99 ms | x metrics off | app CPU ms/req | non-2xx |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for key in METRICS_KEYS:
            r = results[key]
            lines.append(
                f"| {r['label']} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} "
                f"| {cell_ratio(results, key)} | {r['app_cpu_ms_per_request']:.2f} | {r['status_errors']} |"
            )
        lines.append("")
    return lines


def print_tables(report: dict) -> None:
    results = report["results"]
    keys = pair_keys(results)
    if not keys:
        return
    head = (
        f"{'paired scenario':<58} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'xBase':>6} {'p99/wait':>8} "
        f"{'errors':>7}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for key in keys:
        r = results[key]
        print(
            f"{r['label']:<58} {r['rps']:>9,.0f} {r['p50_us'] / 1000:>8.2f} {r['p99_us'] / 1000:>8.2f} "
            f"{cell_ratio(results, key):>6} {starvation(r):>8.2f} {sum(errors(r)):>7}"
        )


def chart_panels(axes, results: dict) -> None:
    """Three panels: the scaled-out topology's req/s beside the direct store's, their latency at
    -c 256, and metrics on beside off."""
    throughput, latency, metrics = axes
    colors = {"direct": "#1f77b4", "topology": "#2ca02c"}
    groups = [(route, c) for route in ROUTES for c in CONCURRENCY]
    width = 0.38
    for i, (route, c) in enumerate(groups):
        for j, store in enumerate(STORES):
            key = scale_key(store, route, c)
            if key not in results:
                continue
            x, rps = i + (j - 0.5) * width, results[key]["rps"]
            throughput.bar(x, rps, width, color=colors[store], label=STORES[store] if i == 0 else None)
            text = f"{rps:,.0f}" + (f"\n{ratio(results[key]):.2f}x" if store == "topology" else "")
            throughput.annotate(text, (x, rps), ha="center", va="bottom", fontsize=7)
            if store == "topology" and c == LOW and scale_key("direct", route, c) in results:
                goal = SCALE_GOAL * results[scale_key("direct", route, c)]["rps"]
                throughput.hlines(goal, x - width / 2, x + width / 2, colors="#d62728", linestyles=":")
    names = {"products": "GET /products", "purchase": "POST /purchase"}
    throughput.set_xticks(range(len(groups)), [f"{names[r]}\n-c {c}" for r, c in groups], fontsize=8)
    throughput.set_ylabel("requests/s")
    throughput.set_ylim(0, max([results[k]["rps"] for k in scale_keys(results)] or [1]) * 1.25)
    throughput.set_title(f"Scaled out vs direct (red dots: {SCALE_GOAL}x direct)", fontsize=10)
    throughput.legend(fontsize=8, loc="upper right")

    high = [scale_key(s, route, HIGH) for route in ROUTES for s in STORES]
    high = [k for k in high if k in results]
    for i, key in enumerate(high):
        r = results[key]
        p50, p99 = r["p50_us"] / 1000, r["p99_us"] / 1000
        latency.bar(i - width / 2, p50, width, color="#1f77b4", label="p50" if i == 0 else None)
        latency.bar(i + width / 2, p99, width, color="#ff7f0e", label="p99" if i == 0 else None)
        latency.annotate(f"{p99:.0f}", (i + width / 2, p99), ha="center", va="bottom", fontsize=7)
        limit = STARVED * implied_wait_ms(r)
        latency.hlines(
            limit,
            i - width,
            i + width,
            colors="black",
            label=f"{STARVED}x {HIGH} / req/s" if i == 0 else None,
        )
        if key.startswith("scale_") and "_products_" in key:
            latency.hlines(
                READ_P99_MS,
                i - width,
                i + width,
                colors="#d62728",
                linestyles="--",
                label=f"{READ_P99_MS} ms (GET p99)" if i == 0 else None,
            )
    labels = [results[k]["label"].split(",")[0].replace("?limit=50", "").replace(": ", ":\n") for k in high]
    latency.set_xticks(range(len(high)), labels, fontsize=7)
    latency.set_ylabel("latency, ms")
    latency.set_title(f"Latency at -c {HIGH}", fontsize=10)
    latency.legend(fontsize=7)

    present = [k for k in METRICS_KEYS if k in results]
    rps = [results[k]["rps"] for k in present]
    bars = metrics.bar(range(len(present)), rps, 0.6, color=["#9e9e9e", "#1f77b4"][: len(present)])
    for bar, key in zip(bars, present, strict=True):
        text = f"{results[key]['rps']:,.0f}" + (
            f"\n{ratio(results[key]):.3f}x" if key == METRICS_KEYS[1] else ""
        )
        metrics.annotate(
            text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom"
        )
    if METRICS_KEYS[0] in results:
        goal = METRICS_GOAL * results[METRICS_KEYS[0]]["rps"]
        metrics.axhline(
            goal, color="#d62728", linestyle=":", linewidth=1, label=f"{METRICS_GOAL}x metrics off"
        )
        metrics.legend(fontsize=8, loc="lower right")
    metrics.set_xticks(range(len(present)), [results[k]["label"].split(":")[0] for k in present], fontsize=8)
    metrics.set_ylim(0, max(rps or [1]) * 1.25)
    metrics.set_ylabel("requests/s")
    metrics.set_title("GET /products: the cost of metrics", fontsize=10)
