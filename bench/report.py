"""Turns the samples bench/run.sh recorded into bench/RESULTS.md: medians, ratios to no counting,
and the targets of the benchmark issue. Usage: report.py SAMPLES ROUNDS SECONDS SMOKE BIG MILLION"""

import datetime
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

samples_path, rounds, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
smoke, big, million = sys.argv[4] == "1", int(sys.argv[5]), int(sys.argv[6])
samples = defaultdict(list)
with open(samples_path) as f:
    for line in f:
        workload, variant, value = line.split()
        samples[(workload, variant)].append(float(value))


def median(workload, variant):
    values = samples.get((workload, variant))
    return statistics.median(values) if values else None


# (workload, unit, higher is better, target description, target check on org_stats / none)
ROWS = [
    ("bulk_update_100k", "ms", False, "<= 1.5x time", lambda r: r <= 1.5),
    ("bulk_update_20k", "ms", False, "", None),
    ("bulk_insert_20k", "ms", False, "<= 1.3x time", lambda r: r <= 1.3),
    ("insert_1_client", "TPS", True, ">= 0.90x TPS", lambda r: r >= 0.90),
    ("insert_1_client_filtered", "TPS", True, ">= 0.95x of plain counting", lambda r: r >= 0.95),
    ("insert_1_client_summed", "TPS", True, ">= 0.95x of plain counting", lambda r: r >= 0.95),
    ("insert_plus_counter_update_1_client", "TPS", True, "", None),
    ("insert_8_clients_100_orgs", "TPS", True, ">= 0.90x TPS", lambda r: r >= 0.90),
    ("insert_8_clients_summed", "TPS", True, ">= 0.95x of plain counting", lambda r: r >= 0.95),
    ("insert_1_client_lanes_plain", "TPS", True, "", None),
    ("insert_1_client_lanes", "TPS", True, ">= 0.95x", lambda r: r >= 0.95),
    ("status_update_8_clients_lanes_plain", "TPS", True, "", None),
    ("status_update_8_clients_lanes", "TPS", True, ">= 0.95x", lambda r: r >= 0.95),
    ("insert_plus_counter_update_8_clients", "TPS", True, "", None),
    ("status_update_8_clients_one_org", "TPS", True, ">= 0.80x TPS, 0 failures", lambda r: r >= 0.80),
    ("insert_8_clients_one_org", "TPS", True, ">= 0.80x TPS", lambda r: r >= 0.80),
    ("status_update_8_clients_one_org_notifying", "TPS", True, ">= 0.95x", lambda r: r >= 0.95),
    ("status_update_8_clients_one_org_notify_trigger", "TPS", True, "", None),
    ("insert_8_clients_one_org_notifying", "TPS", True, ">= 0.95x", lambda r: r >= 0.95),
    ("insert_8_clients_one_org_notify_trigger", "TPS", True, "", None),
    ("mixed_oltp_8_clients_10_orgs", "TPS", True, "", None),
    ("read_counts_big_org", "TPS", True, ">= 1000x GROUP BY, >= hand-written", lambda r: r >= 1000),
    ("read_function_call_floor", "TPS", True, "", None),
]

# Measurements of org_stats put in proportion to another org_stats measurement rather than to no
# counting: workload -> (base workload, description).
AGAINST_COUNTING = {
    "insert_1_client_filtered": ("insert_1_client", "a tracking with a filter (note IS NULL), / plain counting"),
    "insert_1_client_summed": ("insert_1_client", "a tracking with a sum (of id), / plain counting"),
    "insert_8_clients_summed": ("insert_8_clients_100_orgs", "a tracking with a sum (of id), / plain counting"),
    "insert_1_client_lanes_plain": (
        "insert_1_client", "reference: loads with a carrier and a time, counted by (org, status), / insert_1_client"),
    "insert_1_client_lanes": (
        "insert_1_client_lanes_plain", "the same inserts counted by (status, carrier) and an hour bucket, / by status"),
    "status_update_8_clients_lanes_plain": (
        "status_update_8_clients_one_org", "reference: the same on loads with a carrier and a time, / status_update_8_clients_one_org"),
    "status_update_8_clients_lanes": (
        "status_update_8_clients_lanes_plain", "the same updates counted by (status, carrier) and an hour bucket, / by status"),
    "status_update_8_clients_one_org_notifying": (
        "status_update_8_clients_one_org", "notifications on, a session listening, / counting without them"),
    "status_update_8_clients_one_org_notify_trigger": (
        "status_update_8_clients_one_org",
        "reference: a pg_notify() row trigger of your own instead, a session listening, / counting without it"),
    "insert_8_clients_one_org_notifying": (
        "insert_8_clients_one_org", "notifications on, a session listening, / counting without them"),
    "insert_8_clients_one_org_notify_trigger": (
        "insert_8_clients_one_org",
        "reference: a pg_notify() row trigger of your own instead, a session listening, / counting without it"),
}

# Reference points, measured once per round without any counting (in the "none" column) and put
# in proportion to another measurement: workload -> (base workload, base variant, description).
REFERENCES = {
    "insert_plus_counter_update_1_client": (
        "insert_1_client", "none", "reference: the insert + 1 counter UPDATE by hand, / none"),
    "insert_plus_counter_update_8_clients": (
        "insert_8_clients_100_orgs", "none", "reference: the insert + 1 counter UPDATE by hand, / none"),
    "read_function_call_floor": (
        "read_counts_big_org", "handwritten",
        "reference: a built-in set-returning function, 5 rows, no table, / hand-written read"),
}


def fmt(value, unit):
    if value is None:
        return "not run"
    return f"{value:,.0f}" if unit == "TPS" or value >= 100 else f"{value:,.1f}"


def failures(workload, variant):
    value = median(workload + ".failed", variant)
    return "" if value is None else f" ({value:.0f} failed)" if value else ""


def sh(command):
    try:
        return subprocess.run(command, shell=True, capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError:
        return "?"


cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
memory = sh("free -g | awk '/^Mem:/ {print $2}'")
postgres = sh("psql -X -At -c 'SHOW server_version'")
settings = sh("psql -X -At -c \"SELECT string_agg(name || ' = ' || setting, ', ' ORDER BY name) FROM pg_settings "
              "WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')\"")

out = []
out.append("# org_stats benchmark results" + (" (smoke run, tiny sizes: not a measurement)" if smoke else ""))
out.append("")
out.append(f"Run by `./pg_test.sh bench` on {datetime.date.today().isoformat()}: {os.cpu_count()} cores ({cpu}), "
           f"{memory} GiB, {platform.system()} {platform.release()}, PostgreSQL {postgres}, {settings} "
           f"(shared_buffers in 8 kB pages). Release build of org_stats. Medians of {rounds} rounds, "
           f"variants alternated none, handwritten, org_stats (and portable) within each round, every measurement on a "
           f"freshly loaded copy of the same data (org_big: {big:,} loads; org_0 .. org_99: 1,000 loads each); "
           f"pgbench runs of {seconds} s with prepared statements.")
out.append("")
out.append("| workload | unit | none | hand-written trigger | org_stats | org_stats / none | target | met |")
out.append("|---|---|---:|---:|---:|---:|---|---|")
verdicts = []
for workload, unit, higher, target, check in ROWS:
    none, hand, ours = (median(workload, v) for v in ("none", "handwritten", "org_stats"))
    ratio = ours / none if ours is not None and none else None
    if workload in REFERENCES:
        base_workload, base_variant, target = REFERENCES[workload]
        base = median(base_workload, base_variant)
        ratio = none / base if none and base else None
    if workload in AGAINST_COUNTING:
        base_workload, description = AGAINST_COUNTING[workload]
        base = median(base_workload, "org_stats")
        ratio = ours / base if ours and base else None
        target = f"{description} {target}".strip()
    met = ""
    if check and ratio is not None:
        ok = check(ratio)
        if workload == "read_counts_big_org" and hand:
            ok = ok and ours >= hand
        if workload.startswith("status_update"):
            ok = ok and not median(workload + ".failed", "org_stats")
        met = "yes" if ok else "**no**"
        verdicts.append((workload, ok))
    out.append(f"| {workload} | {unit} | {fmt(none, unit)}{failures(workload, 'none')} | "
               f"{fmt(hand, unit)}{failures(workload, 'handwritten')} | {fmt(ours, unit)}{failures(workload, 'org_stats')} | "
               f"{'' if ratio is None else f'{ratio:.2f}x'} | {target} | {met} |")

pool_none, pool_ours = median("pooled_write", "none"), median("pooled_write", "org_stats")
if pool_ours is not None:
    mean, most = median("pooled_rows_mean", "org_stats"), median("pooled_rows_max", "org_stats")
    size, folded_size = median("pooled_counters_kb", "org_stats"), median("pooled_counters_folded_kb", "org_stats")
    read, folded_read = median("pooled_read_fattest_us", "org_stats"), median("pooled_read_folded_us", "org_stats")
    out.append("")
    out.append("Pooled writers: 60 connections (8 in a smoke run) inserting rows and changing statuses, half each, "
               "over 2,000 orgs x 5 statuses (200,000 rows loaded); then the counter rows per (org, status), the "
               "counters' size, and the read of the org with the most counter rows, before and after "
               "`recalculate()` folded them (and `VACUUM FULL` compacted the counters):")
    out.append("")
    out.append("| measure | org_stats | reference | ratio | target | met |")
    out.append("|---|---:|---:|---:|---|---|")
    pool_rows = [
        ("write TPS (reference: no counting)", pool_ours, pool_none, ">= 0.85x", lambda r: r >= 0.85, True),
        ("reference: the same statements plus their counter UPDATEs by hand, on rows each client alone "
         "writes, no trigger (1 for an insert, 2 for a status change); TPS against no counting",
         median("pooled_floor", "none"), pool_none, "", None, True),
        ("reference: org_stats' triggers with a tracking no row passes (filter `id < 0`), so they fire "
         "and count nothing; TPS against no counting",
         median("pooled_triggers_only", "none"), pool_none, "", None, True),
        ("counter rows per group, mean", mean, None, "<= 1.5", lambda v: v <= 1.5, False),
        ("counter rows per group, max", most, None, "<= 10", lambda v: v <= 10, False),
        ("counters' size, kB (reference: folded)", size, folded_size, "<= 2x", lambda r: r <= 2, True),
        ("read of the fattest org, us (reference: folded)", read, folded_read, "<= 1.5x", lambda r: r <= 1.5, True),
    ]
    for name, value, reference, target, check, ratio_based in pool_rows:
        if value is None:
            continue
        ratio = value / reference if ratio_based and reference else None
        met = ""
        if check:
            ok = check(ratio if ratio_based else value)
            verdicts.append(("pooled: " + name, ok))
            met = "yes" if ok else "**no**"
        shown = f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
        ref = "" if reference is None else (f"{reference:,.2f}" if reference < 100 else f"{reference:,.0f}")
        out.append(f"| {name} | {shown} | {ref} | {'' if ratio is None else f'{ratio:.2f}x'} | {target} | {met} |")

live_30 = median("read_group_by_30_days", "org_stats")
if live_30 is not None:
    live_30_us = median("read_group_by_30_days_us", "org_stats")
    day_us = median("read_groups_1_day_us", "org_stats")
    out.append("")
    out.append(f"Reads between two instants: org_big's {big:,} loads spread over 2026, 10 (status, carrier) keys, "
               "tracked by (status, carrier) and the hour of `created_at`; `groups()` between two instants inside "
               "hour buckets (so two buckets are cut and counted from the table), 8 clients, and the same read timed "
               "inside the server (no round trip), against the live `GROUP BY` through an index on "
               "(workos_org_id, created_at):")
    out.append("")
    out.append("| read | TPS | us in the server | ratio | target | met |")
    out.append("|---|---:|---:|---:|---|---|")
    out.append(f"| live GROUP BY, 30 days | {fmt(live_30, 'TPS')} | {fmt(live_30_us, 'ms')} | | | |")
    for days in (1, 30, 365):
        tps, us = median(f"read_groups_{days}_day{'s' if days > 1 else ''}", "org_stats"), \
            median(f"read_groups_{days}_day{'s' if days > 1 else ''}_us", "org_stats")
        if tps is None:
            continue
        if days == 30:
            ratio, target, ok = tps / live_30, ">= 50x the live GROUP BY's TPS", tps / live_30 >= 50
        elif days == 365 and day_us:
            ratio, target, ok = us / day_us, "<= 10x the 1-day read's time", us / day_us <= 10
        else:
            ratio, target, ok = None, "", None
        met = "" if ok is None else ("yes" if ok else "**no**")
        if ok is not None:
            verdicts.append((f"read_groups_{days}_days", ok))
        out.append(f"| groups(), {days} day{'s' if days > 1 else ''} | {fmt(tps, 'TPS')} | {fmt(us, 'ms')} | "
                   f"{'' if ratio is None else f'{ratio:.2f}x'} | {target} | {met} |")
    settle = median("settle_lanes", "org_stats")
    if settle is not None:
        out.append("")
        out.append(f"Before those reads, `recalculate('lanes')` checked the {big + 100000:,} loads and settled their "
                   f"hours into day and month totals in {fmt(settle, 'ms')} ms (then `VACUUM org_stats.counters`, as "
                   "autovacuum would, removed the index entries of the hours' moved rows).")

# The portable edition (portable/org_stats.sql), in a database of its own on the same cluster:
# (workload, unit, target, check on its ratio, against "none" or, for the read, the native edition).
PORTABLE_ROWS = [
    ("bulk_update_100k", "ms", "none", "<= 2x time", lambda r: r <= 2.0),
    ("insert_1_client", "TPS", "none", ">= 0.65x TPS", lambda r: r >= 0.65),
    ("insert_8_clients_100_orgs", "TPS", "none", ">= 0.65x TPS", lambda r: r >= 0.65),
    ("status_update_8_clients_one_org", "TPS", "none", ">= 0.60x TPS, 0 failures", lambda r: r >= 0.60),
    ("read_counts_big_org", "TPS", "org_stats", "a read at most 2x the native one's: >= 0.50x its TPS", lambda r: r >= 0.50),
]
if any(median(w, "portable") is not None for w, *_ in PORTABLE_ROWS):
    out.append("")
    out.append("The portable edition (`portable/org_stats.sql`, [docs/managed.md](../docs/managed.md)) in a database "
               "of its own on the same cluster, measured in the same rounds:")
    out.append("")
    out.append("| workload | unit | none | org_stats | portable | portable / reference | target | met |")
    out.append("|---|---|---:|---:|---:|---:|---|---|")
    for workload, unit, against, target, check in PORTABLE_ROWS:
        none, native, portable = (median(workload, v) for v in ("none", "org_stats", "portable"))
        base = none if against == "none" else native
        ratio = portable / base if portable is not None and base else None
        met = ""
        if ratio is not None:
            ok = check(ratio) and not median(workload + ".failed", "portable")
            met = "yes" if ok else "**no**"
            verdicts.append((f"portable: {workload}", ok))
        out.append(f"| {workload} | {unit} | {fmt(none, unit)} | {fmt(native, unit)} | "
                   f"{fmt(portable, unit)}{failures(workload, 'portable')} | "
                   f"{'' if ratio is None else f'{ratio:.2f}x'} (/ {against}) | {target} | {met} |")

group_by, backfill, recalc = (median(w, "org_stats") for w in ("group_by_1m_rows", "backfill_1m_rows", "recalculate_1m_rows"))
out.append("")
out.append(f"Maintenance of a {million:,}-row table, against one `SELECT org, status, count(*) ... GROUP BY` over it:")
out.append("")
out.append("| operation | ms | / GROUP BY | target | met |")
out.append("|---|---:|---:|---|---|")
if group_by:
    out.append(f"| GROUP BY over the table | {fmt(group_by, 'ms')} | 1.00x | | |")
    out.append(f"| CALL org_stats.backfill() (500 orgs per transaction) | {fmt(backfill, 'ms')} | {backfill / group_by:.2f}x | | |")
    ok = recalc <= 2 * group_by
    verdicts.append(("recalculate_1m_rows", ok))
    out.append(f"| org_stats.recalculate() (after the backfill: no drift) | {fmt(recalc, 'ms')} | {recalc / group_by:.2f}x | <= 2x | {'yes' if ok else '**no**'} |")
out.append("")
missed = [w for w, ok in verdicts if not ok]
out.append("Targets met: " + (f"{len(verdicts) - len(missed)} of {len(verdicts)}" + (f"; missed: {', '.join(missed)}." if missed else ".")))
analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
if not smoke and os.path.exists(analysis):
    out.append("")
    out.append(open(analysis).read().rstrip())
print("\n".join(out))
