#!/usr/bin/env python3
"""Turns a raw results file of run.sh into one table (median, min-max per
metric, ratios against peers measured in the same run, targets met or not),
ratios.png, and the generated section of BENCHMARKS.md.

    python3 report.py results/raw-<UTC>.txt              # table + PNG + BENCHMARKS.md
    python3 report.py results/raw-<UTC>.txt --no-write   # table only

Only the standard library is needed; the chart uses matplotlib when it can be
imported, and otherwise a small PNG writer below (zlib + a bitmap font).
"""
import os
import re
import statistics
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------------ parsing


def parse(path):
    """values[(impl, metric)] = {run: value}; header lines; exits noted."""
    values, header, notes = {}, [], []
    run = 0
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"## (?:pinned |paired )?run (\d+)\b", line)
        if m:
            run = int(m.group(1))
            continue
        if re.match(r"## .* exited \d+", line):
            notes.append(line[3:])
            continue
        if line.startswith("# ") and ":" in line and not line.startswith("# pass"):
            if re.match(r"# (date|host|load|versions|library|sizes|syscall counter)", line):
                header.append(line[2:])
            continue
        if line.startswith("RESULT "):
            parts = line.split()
            if len(parts) != 5:
                continue
            _, impl, metric, value, _unit = parts
            try:
                values.setdefault((impl, metric), {})[run] = float(value)
            except ValueError:
                pass
    return values, header, notes


# --------------------------------------------------------------- the rows
# (section, label, impl, metric, kind); kind picks the unit and the format.
ROWS = [
    ("a", "ours: a BH re-scheduling itself, native `poll(blocking:)`", "aio", "a_bh_native_ops_per_s", "Mops"),
    ("a", "ours: the same BH, `g_main_context_iteration` (GSource)", "aio", "a_bh_gsource_ops_per_s", "Mops"),
    ("a", "ours: chain of one-shots, native poll", "aio", "a_oneshot_native_ops_per_s", "Mops"),
    ("a", "GLib `g_idle_add` chain (C API from Swift)", "glibsw", "a_chain_ops_per_s", "Mops"),
    ("a", "GLib bare idle-source iteration (C API from Swift)", "glibsw", "a_repeat_ops_per_s", "Mops"),
    ("a", "GLib bare idle-source iteration with 3 idle fds polled, as many as an attached context adds (C API from Swift)", "glibsw", "a_repeat3fd_ops_per_s", "Mops"),
    ("a", "GLib `g_idle_add` chain (C program)", "glib", "a_chain_ops_per_s", "Mops"),
    ("a", "GLib bare idle-source iteration (C program)", "glib", "a_repeat_ops_per_s", "Mops"),
    ("a", "SwiftNIO `execute` chain", "nio", "a_execute_ops_per_s", "Mops"),
    ("a", "libuv `uv_idle`, one callback per iteration", "libuv", "a_idle_ops_per_s", "Mops"),
    ("a", "libevent `event_active` re-arm", "libevent", "a_active_ops_per_s", "Mops"),
    ("a", "C floor: MPSC stack + notify_me, malloc per callback", "raw", "a_chain_ops_per_s", "Mops"),
    ("a", "C floor of this library's protocol: the same 7 locked instructions per callback, no allocation (peers/bench_floor_protocol.c)", "floorproto", "a_chain_ops_per_s", "Mops"),
    ("a", "ours native: allocations per callback", "aio", "a_bh_native_allocs_per_op", "allocs"),
    ("a", "ours GSource: non-blocking polls per callback", "aio", "a_bh_gsource_nonblocking_polls_per_op", "perop"),
    ("b", "ours: one-shots, 1 producer, native loop", "aio", "b_oneshot1_native_ops_per_s", "Mops"),
    ("b", "ours: one-shots, 2 producers, native loop", "aio", "b_oneshot2_native_ops_per_s", "Mops"),
    ("b", "ours: one-shots capturing nothing, 1 producer, native loop", "aio", "b_oneshotbare1_native_ops_per_s", "Mops"),
    ("b", "ours: one-shots capturing nothing, 2 producers, native loop", "aio", "b_oneshotbare2_native_ops_per_s", "Mops"),
    ("b", "ours: re-schedule one BH, 1 producer, native loop", "aio", "b_bh1_native_ops_per_s", "Mops"),
    ("b", "ours: re-schedule one BH, 2 producers, native loop", "aio", "b_bh2_native_ops_per_s", "Mops"),
    ("b", "ours: one-shots, 1 producer, IOThread with busy polling (32 µs)", "aio", "b_oneshot1_native_polling_ops_per_s", "Mops"),
    ("b", "ours: re-schedule one BH, 1 producer, IOThread with busy polling (32 µs)", "aio", "b_bh1_native_polling_ops_per_s", "Mops"),
    ("b", "ours one-shots 1 producer, busy polling: eventfd writes/op", "aio", "b_oneshot1_native_polling_efd_writes_per_op", "perop"),
    ("b", "ours one BH 1 producer, busy polling: eventfd writes/op", "aio", "b_bh1_native_polling_efd_writes_per_op", "perop"),
    ("b", "ours: one-shots, 1 producer, GLib loop (GSource)", "aio", "b_oneshot1_gsource_ops_per_s", "Mops"),
    ("b", "ours: re-schedule one BH, 1 producer, GLib loop (GSource)", "aio", "b_bh1_gsource_ops_per_s", "Mops"),
    ("b", "GLib `g_main_context_invoke`, 1 producer (from Swift)", "glibsw", "b_invoke_ops_per_s", "Mops"),
    ("b", "GLib `g_main_context_invoke`, 2 producers (from Swift)", "glibsw", "b_invoke2_ops_per_s", "Mops"),
    ("b", "GLib `g_main_context_invoke`, 1 producer (C program)", "glib", "b_invoke_ops_per_s", "Mops"),
    ("b", "SwiftNIO `execute`, 1 producer", "nio", "b_execute_ops_per_s", "Mops"),
    ("b", "SwiftNIO `execute`, 2 producers", "nio", "b_execute2_ops_per_s", "Mops"),
    ("b", "libuv queue + `uv_async_send`, 1 producer", "libuv", "b_async_ops_per_s", "Mops"),
    ("b", "libuv queue + `uv_async_send`, 1 producer thread (released with the loop running, as ours)", "libuv", "b_async_mp1_ops_per_s", "Mops"),
    ("b", "libuv queue + `uv_async_send`, 2 producer threads", "libuv", "b_async_mp2_ops_per_s", "Mops"),
    ("b", "libevent `event_base_once`, 1 producer", "libevent", "b_once_ops_per_s", "Mops"),
    ("b", "C floor notify_me, 1 producer", "raw", "b_notifyme_ops_per_s", "Mops"),
    ("b", "GLib reference GSource (C): MPSC stack + notify_me, `g_main_context_wakeup`, 1 producer", "glib", "b_notifyme_ops_per_s", "Mops"),
    ("b", "C floor notify_me + wake-pending dedup, 1 producer", "raw", "b_dedup_ops_per_s", "Mops"),
    ("b", "ours one-shots 1 producer: eventfd writes/op (LD_PRELOAD counter)", "aio", "b_oneshot1_native_efd_writes_per_op", "perop"),
    ("b", "ours one-shots 1 producer: eventfd writes/op (library counter)", "aio", "b_oneshot1_native_lib_efd_writes_per_op", "perop"),
    ("b", "ours one-shots 2 producers: eventfd writes/op", "aio", "b_oneshot2_native_efd_writes_per_op", "perop"),
    ("b", "ours one BH 1 producer: eventfd writes/op", "aio", "b_bh1_native_efd_writes_per_op", "perop"),
    ("b", "ours one BH 2 producers: eventfd writes/op", "aio", "b_bh2_native_efd_writes_per_op", "perop"),
    ("b", "ours one-shots via GLib: eventfd writes/op", "aio", "b_oneshot1_gsource_efd_writes_per_op", "perop"),
    ("b", "ours one-shots 1 producer: sleeps of the loop per op", "aio", "b_oneshot1_native_lib_blocking_waits_per_op", "perop"),
    ("b", "ours one BH 1 producer: sleeps of the loop per op", "aio", "b_bh1_native_lib_blocking_waits_per_op", "perop"),
    ("b", "ours one BH 1 producer: BH runs per schedule", "aio", "b_bh1_native_runs_per_op", "perop"),
    ("b", "GLib invoke: eventfd writes/op", "glibsw", "b_invoke_efd_writes_per_op", "perop"),
    ("b", "SwiftNIO execute: eventfd writes/op", "nio", "b_execute_efd_writes_per_op", "perop"),
    ("b", "libuv: eventfd writes/op", "libuv", "b_async_efd_writes_per_op", "perop"),
    ("b", "C floor notify_me: eventfd writes/op", "raw", "b_notifyme_efd_writes_per_op", "perop"),
    ("b", "C floor notify_me + dedup: eventfd writes/op", "raw", "b_dedup_efd_writes_per_op", "perop"),
]
for who, impl, metric in [
    ("ours one-shot, native", "aio", "c_oneshot_native"),
    ("ours BH, native", "aio", "c_bh_native"),
    ("ours one-shot, GSource", "aio", "c_oneshot_gsource"),
    ("ours BH, GSource", "aio", "c_bh_gsource"),
    ("GLib invoke (from Swift)", "glibsw", "c_invoke"),
    ("GLib invoke (C)", "glib", "c_invoke"),
    ("GLib reference GSource notify_me (C)", "glib", "c_notifyme"),
    ("SwiftNIO execute", "nio", "c_execute"),
    ("libuv async", "libuv", "c_async"),
    ("libevent once", "libevent", "c_once"),
    ("C floor notify_me", "raw", "c_notifyme"),
    ("C floor dedup", "raw", "c_dedup"),
]:
    for suffix, tag in [("", "unpinned"), ("@cpu0", "pinned")]:
        for p in ("p50", "p99"):
            ROWS.append(("c", f"{who}: wake {p}, {tag}", impl + suffix, f"{metric}_wake_{p}_us", "us"))
ROWS += [
    ("c", "ours one-shot native: eventfd writes per wake", "aio", "c_oneshot_native_efd_writes_per_op", "perop"),
    ("c", "ours one-shot native: eventfd writes per wake (library counter)", "aio", "c_oneshot_native_lib_efd_writes_per_op", "perop"),
    ("d", "ours: schedule of a pending BH", "aio", "d_schedule_pending_allocs_per_op", "allocs"),
    ("d", "ours: schedule + native poll that runs it", "aio", "d_schedule_poll_allocs_per_op", "allocs"),
    ("d", "ours: schedule + `g_main_context_iteration`", "aio", "d_schedule_gsource_allocs_per_op", "allocs"),
    ("d", "ours: re-schedule one BH from another thread (all threads)", "aio", "d_bh_cross_allocs_per_op", "allocs"),
    ("d", "ours: one-shot + native poll", "aio", "d_oneshot_poll_allocs_per_op", "allocs"),
    ("d", "ours: one-shot from another thread, a flood (all threads)", "aio", "d_oneshot_cross_allocs_per_op", "allocs"),
    ("d", "ours: one-shot from another thread, ≤ 256 in flight (all threads)", "aio", "d_oneshot_cross_paced_allocs_per_op", "allocs"),
    ("d", "GLib `g_idle_add` + iteration", "glibsw", "d_idle_add_allocs_per_op", "allocs"),
    ("d", "GLib `g_main_context_invoke` cross-thread (all threads)", "glibsw", "d_invoke_cross_allocs_per_op", "allocs"),
    ("d", "SwiftNIO `execute` in-loop chain (all threads)", "nio", "d_execute_inloop_allocs_per_op", "allocs"),
    ("d", "SwiftNIO `execute` cross-thread (all threads)", "nio", "d_execute_cross_allocs_per_op", "allocs"),
]
for k in (10, 1000, 100000):
    ROWS.append(("e", f"ours: native poll, {k:,} idle BHs + 1 scheduled", "aio", f"e_bhs_{k}_ns_per_poll", "ns"))
MONITORS = (("io_uring", "io_uring"), ("epoll", "epoll"), ("poll", "ppoll"))
# 100,000 where RLIMIT_NOFILE allows it, else the largest count it allows
# (18,000 under a 20,000 hard limit): rows without data print as "—".
FD_COUNTS = (10, 1000, 10000, 18000, 100000)
# The alternative largest sizes: a row without data there is left out.
OPTIONAL = set()
for mon, _ in MONITORS:
    for path in ("native", "gsource"):
        for k in (18000, 100000):
            OPTIONAL.add(f"e_fds_{mon}_{path}_{k}_ns_per_poll")
            OPTIONAL.add(f"e_register_{mon}_{path}_{k}_ms")
# ppoll through GLib is measured up to 1,000 fds only (see the row's text).
for k in (10000, 18000, 100000):
    OPTIONAL.add(f"e_fds_poll_gsource_{k}_ns_per_poll")
    OPTIONAL.add(f"e_register_poll_gsource_{k}_ms")
for mon, mon_label in MONITORS:
    for path, path_label in (("native", "native poll"), ("gsource", "`g_main_context_iteration`")):
        for k in FD_COUNTS:
            ROWS.append(("e", f"ours, {mon_label}: {path_label}, {k:,} fds registered, 1 ready", "aio",
                         f"e_fds_{mon}_{path}_{k}_ns_per_poll", "ns"))
        for k in FD_COUNTS:
            ROWS.append(("e", f"ours, {mon_label}: register + remove {k:,} fds ({'native' if path == 'native' else 'attached'})", "aio",
                         f"e_register_{mon}_{path}_{k}_ms", "ms"))
for path in ("native", "gsource"):
    for p in ("p50", "p99"):
        ROWS.append(("f", f"ours: timer lateness, {'native' if path == 'native' else 'GSource'}, {p}", "aio", f"f_timer_{path}_{p}_us", "us"))
for who, impl, tag in [("ours, IOThread (native)", "aio", "_native"), ("ours, GSource", "aio", "_gsource"),
                       ("SwiftNIO event loop executor", "nio", ""), ("default actor, global executor", "swift", "")]:
    for p in ("p50", "p99"):
        ROWS.append(("g", f"{who}: actor hop round trip {p}", impl, f"g_hop{tag}_rtt_{p}_us", "us"))
    ROWS.append(("g", f"{who}: actor calls from 4 tasks", impl, f"g_calls{tag}_ops_per_s", "Mops"))
for p in ("p50", "p99"):
    ROWS.append(("g", f"ours, IOThread as shipped (busy polling 32 µs): actor hop round trip {p}", "aio", f"g_hop_native_polling_rtt_{p}_us", "us"))
for who, tag in [("ours, IOThread, busy polling off", "native"), ("ours, IOThread as shipped", "native_polling"),
                 ("ours, GSource", "gsource"), ("SwiftNIO event loop executor", "nio")]:
    for p in ("p50", "p99"):
        ROWS.append(("g", f"interleaved in one process: {who}: hop round trip {p}", "aio", f"g_hopmix_{tag}_rtt_{p}_us", "us"))
ROWS.append(("g", "ours, IOThread as shipped (busy polling 32 µs): actor calls from 4 tasks", "aio", "g_calls_native_polling_ops_per_s", "Mops"))
for who, impl, tag in [("ours, IOThread (native)", "aio", "_native"), ("ours, GSource", "aio", "_gsource"),
                       ("SwiftNIO event loop executor", "nio", ""), ("default actors, global executor", "swift", "")]:
    ROWS.append(("g", f"{who}: calls between two actors on one executor, 4 tasks", impl, f"g_pair{tag}_ops_per_s", "Mops"))
for who, impl, metric in [("ours, IOThread (native)", "aio", "g_tasks_native"), ("ours, GSource", "aio", "g_tasks_gsource"),
                          ("global executor", "swift", "g_tasks")]:
    ROWS.append(("g", f"{who}: Task(executorPreference:) enqueue → run", impl, f"{metric}_ops_per_s", "Mops"))
for who, impl, metric in [("ours, task preferring an IOThread's context", "aio", "g_sleep_native"),
                          ("ours, task preferring a GSource context", "aio", "g_sleep_gsource"),
                          ("global executor", "swift", "g_sleep")]:
    for p in ("p50", "p99"):
        ROWS.append(("g", f"{who}: `Task.sleep(for: .milliseconds(1))` lateness {p}", impl, f"{metric}_{p}_us", "us"))
for who, mode in [("`MainQueuePump`, `g_main_loop_run`", "pump"), ("`GLibMainExecutor` (AioMainExecutor)", "executor")]:
    for p in ("p50", "p99"):
        ROWS.append(("g", f"main actor via {who}: `await MainActor.run {{}}` round trip {p}", "aio", f"g_mainrun_{mode}_rtt_{p}_us", "us"))
for max_us in (0, 32, 256):
    label = "polling off" if max_us == 0 else f"pollMaxNs {max_us} µs"
    for suffix, tag in [("", "unpinned"), ("@cpu0", "pinned")]:
        for p in ("p50", "p99"):
            ROWS.append(("poll", f"ours, {label}, 10k req/s: wake {p}, {tag}", "aio" + suffix, f"p_poll{max_us}_wake_{p}_us", "us"))
    ROWS.append(("poll", f"ours, {label}: loop CPU per wake", "aio", f"p_poll{max_us}_cpu_us_per_wake", "us"))
    ROWS.append(("poll", f"ours, {label}: wakes found by spinning", "aio", f"p_poll{max_us}_spin_hits_per_wake", "perop"))
ROWS.append(("poll", "ours, pollMaxNs 32 µs: idle CPU after a busy spell (10 ms timer)", "aio", "p_idle_cpu_percent", "pct"))
for depth in (1, 32):
    for who, impl, metric in [("ours, io_uring", "aio", "h_uring"), ("ours, io_uring, `[UInt8]` form", "aio", "h_uring_copy"),
                              ("ours, thread pool", "aio", "h_pool"),
                              ("C floor, io_uring (liburing)", "uring", "h_uring"),
                              ("C floor, pread pool (4 threads)", "pool", "h_pool")]:
        ROWS.append(("h", f"{who}: 4 KiB random reads, QD {depth}", impl, f"{metric}_qd{depth}_kops", "kops"))
        ROWS.append(("h", f"{who}: CPU per read, QD {depth}", impl, f"{metric}_qd{depth}_cpu_us", "us"))
ROWS += [
    ("h", "C: synchronous pread, one thread", "pread", "h_pread_sync_kops", "kops"),
]
ROWS += [
    ("other", "ours: thread pool, empty jobs, submit to completion (default limits: up to 64 workers)", "aio", "pool_jobs_per_s", "kjobs"),
    ("other", "ours: thread pool, 4 workers", "aio", "pool4_jobs_per_s", "kjobs"),
    ("other", "GLib `GThreadPool`, 4 threads, completions by `g_main_context_invoke`", "glibsw", "pool4_jobs_per_s", "kjobs"),
    ("other", "SwiftNIO `NIOThreadPool`, 4 threads, `runIfActive(eventLoop:)`", "nio", "pool4_jobs_per_s", "kjobs"),
    ("other", "ours: one-shot round trip to an IOThread, p50", "aio", "iothread_rtt_p50_us", "us"),
    ("other", "ours: one-shot round trip to an IOThread, p99", "aio", "iothread_rtt_p99_us", "us"),
]

UNITS = {"pct": "% CPU", "Mops": "M ops/s", "allocs": "allocs/op", "perop": "per op", "us": "µs", "ns": "ns/poll",
         "kjobs": "k jobs/s", "kops": "k ops/s", "ms": "ms"}


def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "Mops":
        return f"{v / 1e6:.2f}"
    if kind == "kjobs":
        return f"{v / 1e3:.0f}"
    if kind == "ns":
        return f"{v:.0f}"
    if kind == "kops":
        return f"{v:.1f}"
    if kind == "ms":
        return f"{v:.2f}"
    if kind == "us":
        return f"{v:.1f}"
    if kind == "pct":
        return f"{v:.2f}"
    if kind in ("allocs", "perop"):
        if v == 0:
            return "0"
        return f"{v:.4f}" if abs(v) < 0.01 else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return f"{v:g}"


# ---------------------------------------------------------------- targets
# (id, label, kind, numerator, denominator, threshold)
#   ge / le: per-run ratio numerator/denominator against the threshold
#   abs_le:  the numerator's value itself
#   flat_le: max/min over the listed metrics, per run
TARGETS = [
    ("a", "native BH ≥ 3× SwiftNIO `execute`", "ge", ("aio", "a_bh_native_ops_per_s"), ("nio", "a_execute_ops_per_s"), 3.0),
    ("a", "native BH ≥ 0.6× the C floor", "ge", ("aio", "a_bh_native_ops_per_s"), ("raw", "a_chain_ops_per_s"), 0.6),
    ("a", "native BH ≥ 0.6× the C floor of this library's protocol (same locked instructions, no allocation)", "ge", ("aio", "a_bh_native_ops_per_s"), ("floorproto", "a_chain_ops_per_s"), 0.6),
    ("a", "GSource BH ≥ 0.95× GLib bare idle iteration (from Swift)", "ge", ("aio", "a_bh_gsource_ops_per_s"), ("glibsw", "a_repeat_ops_per_s"), 0.95),
    ("a", "GSource BH ≥ 0.95× GLib bare idle iteration (C program)", "ge", ("aio", "a_bh_gsource_ops_per_s"), ("glib", "a_repeat_ops_per_s"), 0.95),
    ("a", "native BH ≥ 0.6× the C floor, paired (the two processes run back to back)", "ge", ("aio@paired", "a_bh_native_ops_per_s"), ("raw@paired", "a_chain_ops_per_s"), 0.6),
    ("a", "GSource BH ≥ 0.95× GLib bare idle iteration (from Swift), paired", "ge", ("aio@paired", "a_bh_gsource_ops_per_s"), ("glibsw@paired", "a_repeat_ops_per_s"), 0.95),
    ("a", "GSource BH ≥ 0.95× GLib bare idle iteration (C program), paired", "ge", ("aio@paired", "a_bh_gsource_ops_per_s"), ("glib@paired", "a_repeat_ops_per_s"), 0.95),
    ("a", "GSource BH ≥ 0.95× GLib idle iteration polling 3 fds (from Swift)", "ge", ("aio", "a_bh_gsource_ops_per_s"), ("glibsw", "a_repeat3fd_ops_per_s"), 0.95),
    ("b", "one-shots capturing nothing, 1 producer ≥ 1× libuv (1 producer thread)", "ge", ("aio", "b_oneshotbare1_native_ops_per_s"), ("libuv", "b_async_mp1_ops_per_s"), 1.0),
    ("b", "one-shots capturing nothing, 2 producers ≥ 1× libuv (2 producer threads)", "ge", ("aio", "b_oneshotbare2_native_ops_per_s"), ("libuv", "b_async_mp2_ops_per_s"), 1.0),
    ("b", "one-shots capturing nothing, 1 producer ≥ 1× libuv, paired", "ge", ("aio@paired", "b_oneshotbare1_native_ops_per_s"), ("libuv@paired", "b_async_mp1_ops_per_s"), 1.0),
    ("b", "one-shots capturing nothing, 2 producers ≥ 1× libuv, paired", "ge", ("aio@paired", "b_oneshotbare2_native_ops_per_s"), ("libuv@paired", "b_async_mp2_ops_per_s"), 1.0),
    ("b", "one-shots capturing nothing, 1 producer ≥ 1× the C floor of the same queue (MPSC stack + notify_me)", "ge", ("aio", "b_oneshotbare1_native_ops_per_s"), ("raw", "b_notifyme_ops_per_s"), 1.0),
    ("b", "one-shots, 1 producer ≥ 1× SwiftNIO `execute`", "ge", ("aio", "b_oneshot1_native_ops_per_s"), ("nio", "b_execute_ops_per_s"), 1.0),
    ("b", "one-shots, 2 producers ≥ 1× SwiftNIO `execute` (2)", "ge", ("aio", "b_oneshot2_native_ops_per_s"), ("nio", "b_execute2_ops_per_s"), 1.0),
    ("b", "one BH, 1 producer ≥ 1× SwiftNIO `execute`", "ge", ("aio", "b_bh1_native_ops_per_s"), ("nio", "b_execute_ops_per_s"), 1.0),
    ("b", "one BH, 2 producers ≥ 1× SwiftNIO `execute` (2)", "ge", ("aio", "b_bh2_native_ops_per_s"), ("nio", "b_execute2_ops_per_s"), 1.0),
    ("b", "one-shots, 1 producer: ≤ 0.01 eventfd writes/op", "abs_le", ("aio", "b_oneshot1_native_efd_writes_per_op"), None, 0.01),
    ("b", "one-shots, 2 producers: ≤ 0.01 eventfd writes/op", "abs_le", ("aio", "b_oneshot2_native_efd_writes_per_op"), None, 0.01),
    ("b", "one BH, 1 producer: ≤ 0.01 eventfd writes/op", "abs_le", ("aio", "b_bh1_native_efd_writes_per_op"), None, 0.01),
    ("b", "one BH, 2 producers: ≤ 0.01 eventfd writes/op", "abs_le", ("aio", "b_bh2_native_efd_writes_per_op"), None, 0.01),
    ("c", "native one-shot, pinned p50 ≤ 1.15× C floor", "le", ("aio@cpu0", "c_oneshot_native_wake_p50_us"), ("raw@cpu0", "c_notifyme_wake_p50_us"), 1.15),
    ("c", "GSource one-shot, pinned p50 ≤ 1.15× C floor", "le", ("aio@cpu0", "c_oneshot_gsource_wake_p50_us"), ("raw@cpu0", "c_notifyme_wake_p50_us"), 1.15),
    ("c", "GSource one-shot, pinned p50 ≤ 1.15× GLib's floor (a C GSource with notify_me, woken by `g_main_context_wakeup`)", "le", ("aio@cpu0", "c_oneshot_gsource_wake_p50_us"), ("glib@cpu0", "c_notifyme_wake_p50_us"), 1.15),
    ("d", "0 allocations per schedule of a pending BH", "abs_le", ("aio", "d_schedule_pending_allocs_per_op"), None, 0.0),
    ("d", "0 allocations per schedule + native poll", "abs_le", ("aio", "d_schedule_poll_allocs_per_op"), None, 0.0),
    ("d", "0 allocations per one-shot + native poll (closure capturing one reference)", "abs_le", ("aio", "d_oneshot_poll_allocs_per_op"), None, 0.0),
    ("d", "one-shots from another thread, loop keeping up: < 1 allocation per 1,000 (all threads)", "abs_le", ("aio", "d_oneshot_cross_paced_allocs_per_op"), None, 0.001),
    ("e", "poll cost flat within 2× for 10 … 100,000 idle BHs", "flat_le", [("aio", f"e_bhs_{k}_ns_per_poll") for k in (10, 1000, 100000)], None, 2.0),
    ("poll", "pollMaxNs 256 µs: unpinned wake p50 < 2 µs at 10k req/s", "abs_le", ("aio", "p_poll256_wake_p50_us"), None, 2.0),
    ("poll", "idle CPU < 1% after the windows shrink", "abs_le", ("aio", "p_idle_cpu_percent"), None, 1.0),
    ("other", "thread pool, 4 workers ≥ 1× the better of GThreadPool and NIOThreadPool (4 threads)", "ge_max", ("aio", "pool4_jobs_per_s"), [("glibsw", "pool4_jobs_per_s"), ("nio", "pool4_jobs_per_s")], 1.0),
] + [
    ("e", f"{mon}, {path}: poll cost flat within 1.2× for 10 … 100,000 fds (or as many as the fd limit allows)", "flat_le",
     [("aio", f"e_fds_{mon}_{path}_{k}_ns_per_poll") for k in FD_COUNTS], None, 1.2)
    for mon in ("io_uring", "epoll") for path in ("native", "gsource")
] + [
    ("f", "GSource timer lateness p50 ≤ 2× native p50", "le", ("aio", "f_timer_gsource_p50_us"), ("aio", "f_timer_native_p50_us"), 2.0),
    ("g", "calls between two actors on an IOThread's context ≥ 0.8× SwiftNIO", "ge", ("aio", "g_pair_native_ops_per_s"), ("nio", "g_pair_ops_per_s"), 0.8),
    ("g", "calls between two actors on a GSource context ≥ 0.8× SwiftNIO", "ge", ("aio", "g_pair_gsource_ops_per_s"), ("nio", "g_pair_ops_per_s"), 0.8),
    ("g", "actor calls from 4 tasks, IOThread ≥ 0.8× SwiftNIO", "ge", ("aio", "g_calls_native_ops_per_s"), ("nio", "g_calls_ops_per_s"), 0.8),
    ("g", "actor calls from 4 tasks, GSource ≥ 0.8× SwiftNIO", "ge", ("aio", "g_calls_gsource_ops_per_s"), ("nio", "g_calls_ops_per_s"), 0.8),
    ("g", "hop round trip p50, IOThread as shipped ≤ SwiftNIO's (interleaved, one process)", "le", ("aio", "g_hopmix_native_polling_rtt_p50_us"), ("aio", "g_hopmix_nio_rtt_p50_us"), 1.0),
    ("g", "hop round trip p50, IOThread, busy polling off ≤ SwiftNIO's (interleaved, one process)", "le", ("aio", "g_hopmix_native_rtt_p50_us"), ("aio", "g_hopmix_nio_rtt_p50_us"), 1.0),
    ("g", "hop round trip p50, GSource ≤ SwiftNIO's (interleaved, one process)", "le", ("aio", "g_hopmix_gsource_rtt_p50_us"), ("aio", "g_hopmix_nio_rtt_p50_us"), 1.0),
    ("h", "io_uring QD 32 ≥ 0.8× the C floor (liburing)", "ge", ("aio", "h_uring_qd32_kops"), ("uring", "h_uring_qd32_kops"), 0.8),
    ("h", "io_uring QD 32 ≥ 2× our thread-pool path", "ge", ("aio", "h_uring_qd32_kops"), ("aio", "h_pool_qd32_kops"), 2.0),
]


def per_run(values, target):
    """{run: measured value of the target} for runs where all parts exist."""
    _tid, _label, kind, num, den, _thr = target
    out = {}
    if kind == "flat_le":
        # Points without data (a size the machine cannot reach) are left out.
        series = [values[k] for k in num if values.get(k)]
        if len(series) < 2:
            return out
        runs = set.intersection(*(set(s) for s in series)) if series else set()
        for r in runs:
            xs = [s[r] for s in series]
            out[r] = max(xs) / min(xs) if min(xs) > 0 else float("inf")
        return out
    a = values.get(num, {})
    if kind == "abs_le":
        return dict(a)
    if kind == "ge_max":
        # Against the best of several peers, per run.
        series = [values.get(d, {}) for d in den]
        for r in set(a).intersection(*(set(x) for x in series)):
            best = max(x[r] for x in series)
            if best > 0:
                out[r] = a[r] / best
        return out
    b = values.get(den, {})
    for r in set(a) & set(b):
        if b[r] > 0:
            out[r] = a[r] / b[r]
    return out


def meets(kind, v, thr):
    return v >= thr if kind in ("ge", "ge_max") else v <= thr + 1e-12


def summary(xs):
    xs = sorted(xs)
    return statistics.median(xs), xs[0], xs[-1]


def ratio_text(v):
    if v == 0:
        return "0"
    if abs(v) < 0.01:
        return f"{v:.4f}"
    return f"{v:.2f}"


def evaluate(values):
    rows = []
    for t in TARGETS:
        tid, label, kind, _num, _den, thr = t
        pr = per_run(values, t)
        if not pr:
            rows.append((tid, label, kind, thr, None, None, None, 0, 0))
            continue
        med, lo, hi = summary(pr.values())
        ok_runs = sum(1 for v in pr.values() if meets(kind, v, thr))
        rows.append((tid, label, kind, thr, med, lo, hi, ok_runs, len(pr)))
    return rows


def threshold_text(kind, thr):
    if kind in ("ge", "ge_max"):
        return f"≥ {thr:g}×"
    if kind == "le":
        return f"≤ {thr:g}×"
    if kind == "flat_le":
        return f"max/min ≤ {thr:g}"
    return f"≤ {thr:g}"


# ------------------------------------------------------------------ table


def table(values):
    """The one table: every row, then every target with its same-run ratio."""
    lines = [
        "| id | measurement | median | min–max | unit | runs |",
        "|---|---|---:|---:|---|---:|",
    ]
    for sec, label, impl, metric, kind in ROWS:
        v = values.get((impl, metric))
        if not v and metric in OPTIONAL:
            continue
        if not v:
            lines.append(f"| ({sec}) | {label} | — | — | {UNITS[kind]} | 0 |")
            continue
        med, lo, hi = summary(v.values())
        lines.append(f"| ({sec}) | {label} | {fmt(med, kind)} | {fmt(lo, kind)}–{fmt(hi, kind)} | {UNITS[kind]} | {len(v)} |")
    lines.append("| **target** | **ratio or value, same run** | **median** | **min–max** | **target** | **met (runs)** |")
    for tid, label, kind, thr, med, lo, hi, ok, n in evaluate(values):
        if med is None:
            lines.append(f"| ({tid}) | {label} | — | — | {threshold_text(kind, thr)} | not measured |")
            continue
        met = "yes" if meets(kind, med, thr) else "**no**"
        lines.append(f"| ({tid}) | {label} | {ratio_text(med)} | {ratio_text(lo)}–{ratio_text(hi)} | {threshold_text(kind, thr)} | {met} ({ok}/{n}) |")
    return "\n".join(lines)


# ------------------------------------------------------------------ chart


def chart_points(values):
    """(label, score median, score min, score max, text) with score = how far
    past the target (≥ 1 met), for the ratio targets."""
    pts = []
    for t, ev in zip(TARGETS, evaluate(values)):
        tid, label, kind, thr, med, lo, hi, _ok, _n = ev
        if med is None or kind not in ("ge", "ge_max", "le", "flat_le"):
            continue
        if kind in ("ge", "ge_max"):
            s = (med / thr, lo / thr, hi / thr)
        else:
            s = tuple(thr / max(x, 1e-9) for x in (med, hi, lo))
        pts.append((f"({tid}) {label}", s[0], s[1], s[2], f"{ratio_text(med)} (target {threshold_text(kind, thr)})"))
    return pts


def draw_matplotlib(pts, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(pts) + 1.6))
    ys = list(range(len(pts)))[::-1]
    for y, (label, s, lo, hi, text) in zip(ys, pts):
        color = "#3a8f3a" if s >= 1 else "#c0392b"
        ax.barh(y, s, color=color, height=0.6)
        ax.errorbar(s, y, xerr=[[s - lo], [hi - s]], fmt="none", ecolor="black", capsize=3, lw=1)
        ax.text(max(hi, s) * 1.08, y, text, va="center", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels([p[0].replace("`", "") for p in pts], fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=1, ls="--")
    ax.set_xlabel("measured / target (≥ 1: target met; log scale; bar = median, whisker = min–max of same-run ratios)")
    ax.set_title(title, fontsize=10)
    lo_all = min(p[2] for p in pts)
    hi_all = max(p[3] for p in pts)
    ax.set_xlim(min(0.05, lo_all / 1.5), max(20, hi_all * 8))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# A 5x7 bitmap font for the fallback writer (rows top to bottom, 5 bits each).
FONT = {
    " ": [0, 0, 0, 0, 0, 0, 0], "0": [14, 17, 19, 21, 25, 17, 14], "1": [4, 12, 4, 4, 4, 4, 14],
    "2": [14, 17, 1, 2, 4, 8, 31], "3": [31, 2, 4, 2, 1, 17, 14], "4": [2, 6, 10, 18, 31, 2, 2],
    "5": [31, 16, 30, 1, 1, 17, 14], "6": [6, 8, 16, 30, 17, 17, 14], "7": [31, 1, 2, 4, 8, 8, 8],
    "8": [14, 17, 17, 14, 17, 17, 14], "9": [14, 17, 17, 15, 1, 2, 12], ".": [0, 0, 0, 0, 0, 12, 12],
    ",": [0, 0, 0, 0, 12, 4, 8], "(": [2, 4, 8, 8, 8, 4, 2], ")": [8, 4, 2, 2, 2, 4, 8],
    "-": [0, 0, 0, 31, 0, 0, 0], "+": [0, 4, 4, 31, 4, 4, 0], "/": [1, 1, 2, 4, 8, 16, 16],
    ":": [0, 12, 12, 0, 12, 12, 0], "<": [2, 4, 8, 16, 8, 4, 2], ">": [8, 4, 2, 1, 2, 4, 8],
    "=": [0, 0, 31, 0, 31, 0, 0], "x": [0, 0, 17, 10, 4, 10, 17], "_": [0, 0, 0, 0, 0, 0, 31],
    "a": [0, 0, 14, 1, 15, 17, 15], "b": [16, 16, 22, 25, 17, 17, 30], "c": [0, 0, 14, 16, 16, 17, 14],
    "d": [1, 1, 13, 19, 17, 17, 15], "e": [0, 0, 14, 17, 31, 16, 14], "f": [6, 9, 8, 28, 8, 8, 8],
    "g": [0, 15, 17, 17, 15, 1, 14], "h": [16, 16, 22, 25, 17, 17, 17], "i": [4, 0, 12, 4, 4, 4, 14],
    "j": [2, 0, 6, 2, 2, 18, 12], "k": [16, 16, 18, 20, 24, 20, 18], "l": [12, 4, 4, 4, 4, 4, 14],
    "m": [0, 0, 26, 21, 21, 17, 17], "n": [0, 0, 22, 25, 17, 17, 17], "o": [0, 0, 14, 17, 17, 17, 14],
    "p": [0, 0, 30, 17, 30, 16, 16], "q": [0, 0, 13, 19, 15, 1, 1], "r": [0, 0, 22, 25, 16, 16, 16],
    "s": [0, 0, 14, 16, 14, 1, 30], "t": [8, 8, 28, 8, 8, 9, 6], "u": [0, 0, 17, 17, 17, 19, 13],
    "v": [0, 0, 17, 17, 17, 10, 4], "w": [0, 0, 17, 17, 21, 21, 10], "y": [0, 0, 17, 17, 15, 1, 14],
    "z": [0, 0, 31, 2, 4, 8, 31], "?": [14, 17, 1, 2, 4, 0, 4],
}


def draw_fallback(pts, path, title):
    """Same chart as draw_matplotlib, drawn into a pixel buffer and written as
    an 8-bit RGB PNG with zlib."""
    label_w, bar_w, text_w = 430, 420, 250
    row_h, top = 22, 40
    w, h = label_w + bar_w + text_w, top + row_h * len(pts) + 40
    px = bytearray(b"\xff" * (w * h * 3))

    def rect(x0, y0, x1, y1, rgb):
        for y in range(max(0, y0), min(h, y1)):
            row = y * w * 3
            for x in range(max(0, x0), min(w, x1)):
                px[row + 3 * x: row + 3 * x + 3] = bytes(rgb)

    def text(x, y, s, rgb=(0, 0, 0)):
        for ch in s.lower():
            glyph = FONT.get(ch, FONT["?"])
            for gy, bits in enumerate(glyph):
                for gx in range(5):
                    if bits & (1 << (4 - gx)):
                        rect(x + gx, y + gy, x + gx + 1, y + gy + 1, rgb)
            x += 6

    import math
    lo_v, hi_v = 0.05, 20.0

    def xpos(v):
        v = min(max(v, lo_v), hi_v)
        return label_w + int((math.log10(v) - math.log10(lo_v)) / (math.log10(hi_v) - math.log10(lo_v)) * bar_w)

    text(8, 10, title)
    for i, (label, s, lo, hi, note) in enumerate(pts):
        y = top + i * row_h
        clean = label.replace("`", "").replace("≥", ">=").replace("≤", "<=").replace("×", "x").replace("…", "..")
        text(8, y + 6, clean[:70])
        rgb = (58, 143, 58) if s >= 1 else (192, 57, 43)
        rect(label_w, y + 4, xpos(s), y + row_h - 4, rgb)
        rect(xpos(lo), y + row_h // 2, xpos(hi) + 1, y + row_h // 2 + 1, (0, 0, 0))
        text(label_w + bar_w + 6, y + 6, note.replace("≥", ">=").replace("≤", "<=").replace("×", "x"))
    rect(xpos(1.0), top - 4, xpos(1.0) + 1, top + row_h * len(pts), (0, 0, 0))
    for v in (0.1, 1, 10):
        text(xpos(v) - 6, top + row_h * len(pts) + 8, f"{v:g}")
    text(label_w, top + row_h * len(pts) + 24, "measured/target, log scale, >= 1 met")

    raw = b"".join(b"\x00" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def draw(values, path, title):
    pts = chart_points(values)
    if not pts:
        return "no ratio targets measured: no chart"
    if os.environ.get("BENCH_CHART") != "fallback":
        try:
            draw_matplotlib(pts, path, title)
            return "matplotlib"
        except ImportError:
            pass
    draw_fallback(pts, path, title)
    return "built-in PNG writer"


# --------------------------------------------------------------- document

BEGIN = "<!-- BEGIN GENERATED RESULTS (Benchmarks/report.py) -->"
END = "<!-- END GENERATED RESULTS -->"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    write = "--no-write" not in sys.argv
    if len(args) != 1:
        print(__doc__)
        sys.exit(2)
    raw = args[0]
    values, header, notes = parse(raw)
    runs = max((len(v) for v in values.values()), default=0)
    t = table(values)
    print(f"\n# Benchmarks: {os.path.basename(raw)}, {runs} run(s); median and min–max over runs\n")
    for h in header:
        print(f"- {h}")
    for n in notes:
        print(f"- note: {n}")
    print()
    print(t)
    if not write:
        return
    rel_raw = os.path.relpath(os.path.abspath(raw), HERE)
    how = draw(values, os.path.join(HERE, "ratios.png"), f"swift-aio vs peers, same-run ratios ({os.path.basename(raw)})")
    section = [BEGIN, "",
               f"Run `{rel_raw}`: {runs} runs, round-robin; median and min–max over runs. "
               f"Ratios are taken within each run, then summarised. Chart: `ratios.png` ({how}).", ""]
    section += [f"- {h}" for h in header] + [f"- note: {n}" for n in notes] + ["", t, "", "![same-run ratios against the targets](ratios.png)", "", END]
    doc_path = os.path.join(HERE, "BENCHMARKS.md")
    doc = open(doc_path, encoding="utf-8").read() if os.path.exists(doc_path) else "# Benchmarks\n\n"
    block = "\n".join(section)
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n## Results\n\n" + block + "\n"
    with open(doc_path, "w", encoding="utf-8") as f:
        f.write(doc)
    summary_path = os.path.join(os.path.dirname(os.path.abspath(raw)), "summary-" + os.path.basename(raw)[4:].replace(".txt", ".md"))
    with open(summary_path, "w", encoding="utf-8") as f:
        f.write("\n".join(f"- {h}" for h in header) + "\n\n" + t + "\n")
    print(f"\nwrote {os.path.relpath(doc_path)} (results section), ratios.png, {os.path.relpath(summary_path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
