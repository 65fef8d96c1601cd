"""Draws a herald-bench result: <scenario>-throughput.png (deliveries and accepted events per
second), <scenario>-latency.png (accept→delivered p50/p99 and ingest p99 of the events due
each second, projection lag) and <scenario>-memory.png and <scenario>-cpu.png (each process), beside the JSON.

    python bench/plot.py bench/results/max.json
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def shade_phases(axes, result):
    for index, phase in enumerate(result["phases"]):
        window = phase["window"]
        if index % 2:
            axes.axvspan(window["from"], window["to"], color="0.93", zorder=0)
        axes.annotate(
            phase["name"],
            (window["from"], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=7,
            color="0.35",
        )


def title(result, what):
    ledger = result["ledger"]
    verdict = "balanced" if ledger["balanced"] else "VOID: ledger does not balance"
    return (
        f"{result['scenario']}: {what}\n"
        f"{ledger['accepted']} accepted, {ledger['delivered']} delivered, "
        f"{ledger['missing']} missing, {ledger['duplicates']} duplicates ({verdict}); "
        f"commit {result['commit']}"
    )


def throughput(result, out):
    seconds = [s["t"] for s in result["timeline"]]
    fig, axes = plt.subplots(figsize=(10, 4.5))
    axes.plot(seconds, [s["deliveries"] for s in result["timeline"]], label="delivered / s")
    axes.plot(seconds, [s["accepted"] for s in result["timeline"]], label="accepted (202) / s", alpha=0.7)
    shade_phases(axes, result)
    axes.set_xlabel("seconds since the start of the load")
    axes.set_ylabel("per second")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(title(result, f"{result['deliveries_per_sec']:.0f} deliveries/s measured"), fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def latency(result, out):
    timeline = [s for s in result["timeline"] if s["p99_ms"] > 0 or s["ingest_p99_ms"] > 0]
    fig, (axes, lag_axes) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    seconds = [s["t"] for s in timeline]
    axes.plot(seconds, [max(s["p99_ms"], 0.01) for s in timeline], label="accept→delivered p99")
    axes.plot(seconds, [max(s["p50_ms"], 0.01) for s in timeline], label="accept→delivered p50")
    axes.plot(seconds, [max(s["ingest_p99_ms"], 0.01) for s in timeline], label="ingest 202 p99", alpha=0.7)
    shade_phases(axes, result)
    axes.set_yscale("log")
    axes.set_ylabel("ms (events due that second)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="upper left", fontsize=7)
    q = result["accept_to_delivered_ms"]
    axes.set_title(title(result, f"accept→delivered p50 {q['p50']} ms, p99 {q['p99']} ms"), fontsize=9)
    # Lag per second: the highest of the samples (100 ms apart) taken in it.
    for key, label in (("postgres_ms", "Postgres"), ("clickhouse_ms", "ClickHouse")):
        worst = {}
        for sample in result.get("lag_timeline") or []:
            second = int(sample["t"])
            worst[second] = max(worst.get(second, 0.0), sample[key])
        lag_axes.plot(sorted(worst), [worst[t] / 1000 for t in sorted(worst)], label=f"{label} projection lag")
    lag_axes.set_ylabel("lag, s (max per second)")
    lag_axes.set_ylim(bottom=0)
    lag_axes.set_xlabel("seconds since the start of the load")
    lag_axes.grid(alpha=0.3)
    lag_axes.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def per_program(key, ylabel, what):
    def draw(result, out):
        samples = result[key]
        programs = sorted({program for sample in samples for program in sample["values"]})
        fig, axes = plt.subplots(figsize=(10, 4.5))
        for program in programs:
            axes.plot([s["t"] for s in samples], [s["values"].get(program, 0) for s in samples], label=program)
        shade_phases(axes, result)
        axes.set_xlabel("seconds since the start of the load")
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize=7)
        axes.set_title(title(result, what), fontsize=9)
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        plt.close(fig)

    return draw


memory = per_program("memory_timeline", "MB (proportional set size)", "memory of each process")
cpu = per_program("cpu_cores_timeline", "CPU cores", "CPU of each process (2 cores in all)")


def main():
    path = Path(sys.argv[1])
    result = json.loads(path.read_text())
    stem = path.with_suffix("")
    for kind, draw in (("throughput", throughput), ("latency", latency), ("memory", memory), ("cpu", cpu)):
        out = Path(f"{stem}-{kind}.png")
        draw(result, out)
        print(f"plotted: {out}")


if __name__ == "__main__":
    main()
