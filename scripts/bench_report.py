#!/usr/bin/env python3
"""Parsing and report of scripts/bench.sh (python3 standard library only).

  bench_report.py row DIR                 one row/mode: summary line on stdout; for ustack modes the
                                          check that the process ran on ustack (DIR/not_accelerated)
  bench_report.py report RES OUTDIR SVG   the table (stdout, OUTDIR/results.txt), OUTDIR/results.json
                                          and the sockperf latency percentiles as SVG

A run's directory RES/<id>.<mode>.r<repeat> holds: id, mode, repeat, meta (key=value lines), load.out (the load
client's output, or the sockperf client's under test), cpu ("busy_ticks seconds hz" of the whole
machine over the measured window), perf.stat (perf stat -x, output), stats.json (onloadctl stats
--all --json of ustack's processes of the row), failed (why). iperf3-in-capture's runs also: after.out (the
second load's iperf3 -J), cpu.first (the machine's busy time at the end of the first load), and in
mode capture capture.want, capture.log, capture.leftover and capture_* keys in meta (bench.sh cap_cycles).
"""
import json
import math
import os
import re
import sys

MODES = ["kernel", "busy", "ustack", "spin"]
MODE_NAMES = {"kernel": "kernel", "busy": "kernel busy-poll", "ustack": "ustack", "spin": "ustack spin",
              "capture": "ustack + capture loop"}
USTACK_MODES = ("ustack", "spin", "capture")
PCTS = ["25.000", "50.000", "75.000", "90.000", "99.000", "99.900", "99.990", "99.999"]
PCT_LABELS = ["25", "50", "75", "90", "99", "99.9", "99.99", "99.999", "max"]
MSS = 1448  # payload bytes per TCP segment with timestamps on a 1500-byte MTU


def env(name, default=""):
    return os.environ.get(name, default)


def rows_spec():
    """(id, title, kind) in table order."""
    sp, rn, ws, ms, ips, idle = (env("SOCKPERF_SECS", "4"), env("REDIS_N", "100000"), env("WRK_SECS", "5"),
                                 env("MC_SECS", "5"), env("IPERF_SECS", "5"), env("IDLE_SECS", "60"))
    cs, cc = env("CAPTURE_SECS", "20"), env("CAPTURE_CYCLES", "100")
    return [
        ("sockperf-tcp-server", "sockperf TCP ping-pong 64 B, %s s: sockperf server --tcp under test in A, client in B" % sp, "sockperf"),
        ("sockperf-tcp-client", "sockperf TCP ping-pong 64 B, %s s: sockperf ping-pong under test in A, kernel server in B" % sp, "sockperf"),
        ("sockperf-udp-server", "sockperf UDP ping-pong 64 B, %s s: sockperf server under test in A, client in B" % sp, "sockperf"),
        ("sockperf-udp-client", "sockperf UDP ping-pong 64 B, %s s: sockperf ping-pong under test in A, kernel server in B" % sp, "sockperf"),
        ("redis-set", "redis SET: redis-server under test in A, redis-benchmark -c 50 -n %s from B" % rn, "redis"),
        ("redis-get", "redis GET: redis-server under test in A, redis-benchmark -c 50 -n %s from B" % rn, "redis"),
        ("nginx", "nginx, 1 process, 612-byte file: nginx under test in A, wrk -t1 -c64 -d %ss from B" % ws, "wrk"),
        ("nginx-4w", "nginx, master and 4 workers, 612-byte file: nginx under test in A (syscalls: the master's), wrk -t1 -c64 -d %ss from B" % ws, "wrk"),
        ("memcached-set", "memcached set, 32 B values: memcached -t 1 under test in A, mcload 50 connections %s s from B" % ms, "mcload"),
        ("memcached-get", "memcached get, 32 B values: memcached -t 1 under test in A, mcload 50 connections %s s from B" % ms, "mcload"),
        ("iperf3-in", "iperf3 one stream, B sends to A: iperf3 -s under test in A, iperf3 -c from B, %s s" % ips, "iperf3"),
        ("iperf3-out", "iperf3 one stream, A sends to B: iperf3 -s under test in A, iperf3 -c -R from B, %s s" % ips, "iperf3"),
        ("iperf3-in-v6", "iperf3 one stream over IPv6, B sends to A: iperf3 -s on :: under test in A, iperf3 -c from B, %s s" % ips,
         "iperf3"),
        ("iperf3-in-capture", "iperf3 one stream, B sends to A, %s s then %s s more: iperf3 -s under ustack in A, plain, and with "
         "onloadctl capture --pid <server> -G 0.02 -w /dev/null%s started and stopped %s times in A (CPU %s) during the first %s s" % (
             cs, ips, (" " + env("CAPTURE_FILTER")) if env("CAPTURE_FILTER") else "", cc, env("CAPTURE_CPU", "1"), cs), "capture"),
        ("idle", "idle: redis-server under test in A holding 100 idle connections from B for %s s (kernel and ustack modes only)" % idle, "idle"),
    ]


KINDS = {i: k for i, _, k in rows_spec()}


def read(d, name):
    try:
        with open(os.path.join(d, name), errors="replace") as f:
            return f.read()
    except OSError:
        return None


def meta(d):
    m = {}
    for line in (read(d, "meta") or "").splitlines():
        for kv in line.split():
            k, _, v = kv.partition("=")
            m[k] = v
    return m


def fnum(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def parse_sockperf(out):
    r = {}
    m = re.search(r"avg-lat(?:ency)?=\s*([\d.]+)", out)
    if m:
        r["avg"] = float(m.group(1))
    pct = {}
    for p, v in re.findall(r"---> percentile\s+([\d.]+)\s*=\s*([\d.]+)", out):
        pct.setdefault(p, float(v))  # the first block: the first server's
    m = re.search(r"---> <MAX> observation\s*=\s*([\d.]+)", out)
    if m:
        pct["max"] = float(m.group(1))
    if "50.000" in pct:
        r["p50"] = pct["50.000"]
    if "99.000" in pct:
        r["p99"] = pct["99.000"]
    r["percentiles"] = [pct.get(p) for p in PCTS] + [pct.get("max")]
    m = re.search(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)", out)
    if m and float(m.group(1)) > 0:
        r["rate"] = int(m.group(2)) / float(m.group(1))
    m = re.search(r"\[Total Run\] RunTime=[\d.]+ sec;.*ReceivedMessages=(\d+)", out)
    if m:
        r["requests"] = int(m.group(1))
    if "rate" not in r or "requests" not in r:
        raise ValueError("no [Valid Duration]/[Total Run] in sockperf's output")
    m = re.search(r"# dropped messages = (\d+)", out)
    if m and int(m.group(1)):
        r["note"] = "%s messages dropped" % m.group(1)
    return r


def parse_redis(out, m):
    for name, rps in re.findall(r'^"([A-Z]+)[^"]*","([\d.]+)"', out, re.M):
        return {"rps": float(rps), "requests": int(m.get("requests", 0)) or None}
    raise ValueError("no result line in redis-benchmark --csv output")


def parse_wrk(out):
    m = re.search(r"(\d+) requests in", out)
    r = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not r:
        raise ValueError("no request count or Requests/sec in wrk's output")
    res = {"rps": float(r.group(1)), "requests": int(m.group(1))}
    errs = []
    e = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if e:
        errs.append("%s non-2xx responses" % e.group(1))
    e = re.search(r"Socket errors: (.*)", out)
    if e:
        errs.append("socket errors: " + e.group(1))
    if errs:
        res["note"] = "; ".join(errs)
    return res


def parse_mcload(out):
    m = re.search(r"requests (\d+) rps ([\d.]+)", out)
    if not m:
        raise ValueError("no result line from mcload")
    return {"rps": float(m.group(2)), "requests": int(m.group(1))}


def parse_iperf(out):
    j, _ = json.JSONDecoder().raw_decode(out[out.find("{"):])  # warnings may share the file
    if j.get("error"):
        raise ValueError("iperf3: " + j["error"])
    s = j["end"]["sum_received"]
    return {"gbps": s["bits_per_second"] / 1e9, "bytes": s["bytes"]}


def parse_capture(d, m):
    """The capture loop's figures (bench.sh cap_cycles): cycles completed of those wanted, how many
    saw frames, frames captured and dropped, capture rings left behind."""
    want = int((read(d, "capture.want") or "0").strip() or 0)
    if "capture_cycles" not in m:
        raise ValueError("the capture loop wrote no result: %s" % " | ".join((read(d, "capture.log") or "").strip().splitlines()[-3:]))
    r = {"cycles": int(m["capture_cycles"]), "cycles_want": want, "cycles_seen": int(m["capture_seen"]),
         "cap_frames": int(m["capture_frames"]), "cap_drops": int(m["capture_drops"]),
         "loop_s": int(m["capture_loop_ms"]) / 1000.0, "leftover": int(m.get("capture_leftover", "0"))}
    notes = []
    if r["cycles"] < want:
        why = [l for l in (read(d, "capture.log") or "").splitlines() if l.startswith("capture cycle")]
        notes.append("only %d of %d capture cycles completed (%d started before the load ended%s)" % (
            r["cycles"], want, int(m["capture_started"]), "; " + ", ".join(why[:3]) if why else ""))
    if r["cycles_seen"] < r["cycles"]:
        notes.append("%d of %d capture cycles captured no frame" % (r["cycles"] - r["cycles_seen"], r["cycles"]))
    if r["leftover"]:
        names = (read(d, "capture.leftover") or "").split()
        notes.append("%d capture ring files left behind: %s" % (r["leftover"], " ".join(names[:3])))
    if notes:
        r["cap_note"] = "; ".join(notes)
    return r


def parse_row(d):
    """The figures of one row directory: metrics, work done, machine CPU, syscalls, failure."""
    rid, mode = (read(d, "id") or "").strip(), (read(d, "mode") or "").strip()
    kind = KINDS.get(rid, "")
    m = meta(d)
    r = {"id": rid, "mode": mode}
    failed = (read(d, "failed") or "").strip()
    out = read(d, "load.out") or ""
    if not failed:
        try:
            if kind == "sockperf":
                r.update(parse_sockperf(out))
            elif kind == "redis":
                r.update(parse_redis(out, m))
            elif kind == "wrk":
                r.update(parse_wrk(out))
            elif kind == "mcload":
                r.update(parse_mcload(out))
            elif kind == "iperf3":
                r.update(parse_iperf(out))
            elif kind == "capture":
                r.update(parse_iperf(out))
                after = parse_iperf(read(d, "after.out") or "")
                r["gbps_after"], r["bytes_after"] = after["gbps"], after["bytes"]
                if mode == "capture":
                    r.update(parse_capture(d, m))
            elif kind == "idle":
                hz = float((read(d, "cpu") or "0 0 100").split()[2])
                r.update({"cpu_s": int(m["cpu_ticks"]) / hz, "rss_mb": int(m["rss_kb"]) / 1024.0,
                          "threads": int(m["threads"]), "requests": None})
        except Exception as e:
            failed = "%s: %s" % (e, " | ".join(out.strip().splitlines()[-3:]))
    if failed:
        r["failed"] = failed
    c = (read(d, "cpu") or "").split()
    if len(c) == 3:
        r["machine_cpu_s"] = int(c[0]) / float(c[2])
        r["window_s"] = float(c[1])
    st = read(d, "perf.stat")
    if st is not None:
        for line in st.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[2].startswith("raw_syscalls:sys_enter"):
                r["syscalls"] = 0 if f[0] == "<not counted>" else fnum(f[0])
    c0, c1 = (read(d, "cpu0") or "").split(), (read(d, "cpu.first") or "").split()
    if kind == "capture" and len(c0) == 2 and len(c1) == 2 and len(c) == 3:
        # machine CPU over the first load only; syscalls over both (perf stat spans them)
        r["machine_cpu_s"] = (int(c1[0]) - int(c0[0])) / float(c[2])
        r["window_s"] = float(c1[1]) - float(c0[1])
    # per unit of work
    if kind == "iperf3":
        if r.get("bytes") and "machine_cpu_s" in r:
            r["cpu_per"] = r["machine_cpu_s"] / (r["bytes"] / 1e9)
        if r.get("bytes") and r.get("syscalls") is not None:
            r["sys_per"] = r["syscalls"] / (r["bytes"] / 1e6)
    elif kind == "capture":
        if r.get("bytes") and "machine_cpu_s" in r:
            r["cpu_per"] = r["machine_cpu_s"] / (r["bytes"] / 1e9)
        if r.get("bytes") and r.get("syscalls") is not None:
            r["sys_per"] = r["syscalls"] / ((r["bytes"] + r.get("bytes_after", 0)) / 1e6)
    elif kind != "idle":
        if r.get("requests") and "machine_cpu_s" in r:
            r["cpu_per"] = r["machine_cpu_s"] / r["requests"] * 1e6
        if r.get("requests") and r.get("syscalls") is not None:
            r["sys_per"] = r["syscalls"] / r["requests"]
    # did it run on ustack?
    if mode in USTACK_MODES:
        check_accel(d, r, kind)
    return r


def check_accel(d, r, kind):
    sj = read(d, "stats.json")
    procs = []
    try:
        procs = json.loads(sj) if sj else []
    except ValueError:
        pass
    procs = [p for p in procs if not p.get("total")]  # an interface's total repeats its processes
    rx = sum(p.get("counters", {}).get("xsk.rx_packets", 0) for p in procs)
    tx = sum(p.get("counters", {}).get("xsk.tx_packets", 0) for p in procs)
    r["xsk_rx_packets"], r["xsk_tx_packets"], r["ustack_processes"] = rx, tx, len(procs)
    if kind in ("iperf3", "capture"):
        work = (r.get("bytes") or 0) / MSS
    elif kind == "idle":
        work = 100
    else:
        work = r.get("requests") or 0
    need = max(100, work / 10)
    why = None
    if not procs:
        why = "no ustack stats segment (the process never started ustack's stack): %s" % (read(d, "stats.err") or "").strip()
    elif rx < 100 or tx < 100 or rx + tx < need:
        why = "xsk rx %d tx %d packets for %d units of work" % (rx, tx, work)
    if why and not r.get("failed"):
        r["not_accelerated"] = why
        with open(os.path.join(d, "not_accelerated"), "w") as f:
            f.write(why + "\n")


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    a = abs(v)
    s = "%.0f" % v if a >= 1000 else "%.1f" % v if a >= 100 else "%.2f" % v if a >= 1 else "%.3f" % v
    return s


def summary(r):
    kind = KINDS.get(r["id"], "")
    head = "%s %s:" % (r["id"], MODE_NAMES.get(r["mode"], r["mode"]))
    if r.get("failed"):
        return head + " failed: " + r["failed"]
    if kind == "sockperf":
        s = "p50 %s us, p99 %s us, avg %s us, %s round trips/s" % (fmt(r.get("p50")), fmt(r.get("p99")), fmt(r.get("avg")), fmt(r.get("rate")))
    elif kind == "iperf3":
        s = "%s Gbit/s" % fmt(r.get("gbps"))
    elif kind == "capture":
        s = "%s Gbit/s, then %s Gbit/s" % (fmt(r.get("gbps")), fmt(r.get("gbps_after")))
    elif kind == "idle":
        s = "server CPU %s s, RSS %s MB, %d threads" % (fmt(r.get("cpu_s")), fmt(r.get("rss_mb")), r.get("threads", 0))
    else:
        s = "%s requests/s" % fmt(r.get("rps"))
    unit = "s/GB" if kind in ("iperf3", "capture") else "us/request"
    s += "; machine CPU %s %s" % (fmt(r.get("cpu_per")), unit) if kind != "idle" else "; machine CPU %s s" % fmt(r.get("machine_cpu_s"))
    if kind == "idle":
        s += "; %s syscalls" % fmt(r.get("syscalls"))
    else:
        s += "; %s syscalls/%s" % (fmt(r.get("sys_per")), "MB" if kind in ("iperf3", "capture") else "request")
    if "xsk_rx_packets" in r:
        s += "; xsk rx %d tx %d packets" % (r["xsk_rx_packets"], r["xsk_tx_packets"])
    if "cycles" in r:
        s += "; capture cycles %d of %d in %.1f s (%d with frames), %d frames captured, %d dropped, %d ring files left" % (
            r["cycles"], r["cycles_want"], r["loop_s"], r["cycles_seen"], r["cap_frames"], r["cap_drops"], r["leftover"])
    if r.get("cap_note"):
        s += "; " + r["cap_note"]
    if r.get("note"):
        s += "; " + r["note"]
    return head + " " + s


def cmd_row(d):
    r = parse_row(d)
    print("bench: " + summary(r))
    if r.get("not_accelerated"):
        print("bench: WARNING: %s %s NOT ACCELERATED: %s" % (r["id"], MODE_NAMES[r["mode"]], r["not_accelerated"]))


# ---- report -----------------------------------------------------------------------------------

def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return "%.2fx" % (a / b)


def cell(r, key):
    if r is None:
        return None, "-"
    if r.get("failed"):
        return None, "failed"
    v = r.get(key)
    s = fmt(v)
    if v is not None and r.get("not_accelerated"):
        s += "*"
    return v, s


def median(vals):
    v = sorted(vals)
    return v[len(v) // 2] if v else None


def exec_section(res):
    def vals(name):
        t = read(res, name) or ""
        return [float(x) for x in t.split() if re.match(r"^[\d.]+$", x)]
    m = {n: median(vals(n)) for n in ("exec-true-kernel", "exec-true-ustack", "exec-python-kernel",
                                      "exec-python-ustack", "exec-rss-kernel", "exec-rss-ustack")}
    if not any(v is not None for v in m.values()):
        return None
    for k in ("exec-rss-kernel", "exec-rss-ustack"):
        if m[k] is not None:
            m[k] /= 1024.0
    lines = [
        ("200 x /bin/true from sh, wall s", m["exec-true-kernel"], m["exec-true-ustack"]),
        ("20 x python3 -c pass, wall s", m["exec-python-kernel"], m["exec-python-ustack"]),
        ("python3 -c pass, peak RSS MB", m["exec-rss-kernel"], m["exec-rss-ustack"]),
    ]
    return lines


# The figure that ranks a row's repeated runs: the median run stands for the mode.
MAIN = {"sockperf": "p50", "redis": "rps", "wrk": "rps", "mcload": "rps", "iperf3": "gbps", "idle": "cpu_s", "capture": "gbps"}


def median_run(runs, kind):
    """The run with the median main figure among those that did not fail (the first run when all
    failed); every run's figure goes in its note."""
    key = MAIN.get(kind, "rps")
    ok = sorted((r for r in runs if not r.get("failed") and r.get(key) is not None), key=lambda r: r[key])
    if not ok:
        return runs[0]
    pick = dict(ok[len(ok) // 2])
    if len(runs) > 1:
        figs = ", ".join("failed" if r.get("failed") else fmt(r.get(key)) for r in runs)
        said = "median of %d runs by %s (in run order: %s)" % (len(runs), key, figs)
        if any("cycles" in r for r in runs):
            said += "; capture cycles completed (in run order: %s)" % ", ".join(
                "%d of %d" % (r["cycles"], r["cycles_want"]) if "cycles" in r else "-" for r in runs)
        pick["note"] = "; ".join(n for n in (pick.get("note"), said) if n)
    return pick


def paired_ratio(modes, a, b, key, va, vb):
    """a/b as the median of each repeat's own ratio: the modes of one repeat run within a minute
    of each other, while the machine's speed drifts more than that between repeats (the kernel's
    sockperf p50 went from 17 to 10 us in three repeats). With one repeat, va/vb."""
    ra = {r["repeat"]: r for r in modes.get(a, []) if not r.get("failed")}
    rb = {r["repeat"]: r for r in modes.get(b, []) if not r.get("failed")}
    qs = [ra[k][key] / rb[k][key] for k in ra if k in rb and ra[k].get(key) is not None and rb[k].get(key)]
    if len(qs) < 2:
        return ratio(va, vb)
    return "%.2fx" % median(qs)


def render(cols, table):
    """The lines of a table: a header of cols, then titles (1-tuples) and rows (label, cells...)."""
    w = [max([len(c)] + [len(r[i]) for r in table if len(r) > 1]) for i, c in enumerate([""] + cols)]
    out = ["  ".join(("".ljust(w[0]),) + tuple(c.rjust(w[i + 1]) for i, c in enumerate(cols)))]
    for r in table:
        if len(r) == 1:
            out.append("")
            out.append(r[0])
        else:
            out.append("  ".join((r[0].ljust(w[0]),) + tuple(c.rjust(w[i]) for i, c in enumerate(r) if i)))
    return out


def capture_section(runs, rows, notes):
    """The rows of kind capture (no kernel modes: ustack plain against ustack while onloadctl
    capture starts and stops), as their own table; their notes go to notes."""
    table = []
    for rid, title, kind in rows_spec():
        if rid not in rows or kind != "capture":
            continue
        rm = rows[rid]
        table.append((title,))
        for label, key in [("throughput, first load, Gbit/s", "gbps"), ("throughput, second load (no capture), Gbit/s", "gbps_after"),
                           ("machine CPU per GB, first load, s", "cpu_per"), ("syscalls per MB, both loads", "sys_per")]:
            (vu, su), (vc, sc) = cell(rm.get("ustack"), key), cell(rm.get("capture"), key)
            table.append(("  " + label, su, sc, paired_ratio(runs[rid], "capture", "ustack", key, vc, vu)))
        c = rm.get("capture") or {}
        if "cycles" in c:
            per = c["cap_frames"] / c["cycles"] if c["cycles"] else None
            table.append(("  capture cycles completed", "", "%d of %d" % (c["cycles"], c["cycles_want"]), ""))
            table.append(("  frames captured per cycle (dropped in all)", "", "%s (%d)" % (fmt(per), c["cap_drops"]), ""))
            table.append(("  capture ring files left behind", "", str(c["leftover"]), ""))
        for m in ("ustack", "capture"):
            r = rm.get(m)
            if r and r.get("failed"):
                notes.append("%s %s failed: %s" % (rid, MODE_NAMES[m], r["failed"]))
            if r and r.get("not_accelerated"):
                notes.append("* %s %s not accelerated: %s" % (rid, MODE_NAMES[m], r["not_accelerated"]))
            if r and r.get("note"):
                notes.append("%s %s: %s" % (rid, MODE_NAMES[m], r["note"]))
        for r in runs[rid].get("capture", []):
            if r.get("cap_note"):
                notes.append("%s %s, run %d: %s" % (rid, MODE_NAMES["capture"], r["repeat"], r["cap_note"]))
    return table


def cmd_report(res, outdir, svg):
    runs = {}
    for name in sorted(os.listdir(res)):
        d = os.path.join(res, name)
        if os.path.isdir(d) and os.path.exists(os.path.join(d, "id")):
            r = parse_row(d)
            r["repeat"] = int((read(d, "repeat") or "1").strip() or 1)
            runs.setdefault(r["id"], {}).setdefault(r["mode"], []).append(r)
    rows = {}
    for rid, modes in runs.items():
        for m, rs in modes.items():
            rs.sort(key=lambda r: r["repeat"])
            rows.setdefault(rid, {})[m] = median_run(rs, KINDS.get(rid, ""))
    cols = ["kernel", "kernel busy-poll", "ustack", "ustack spin", "ustack/kernel", "spin/busy-poll"]
    table = []  # (title) or (label, cells...)
    notes = []
    for rid, title, kind in rows_spec():
        if rid not in rows or kind == "capture":
            continue
        rm = rows[rid]
        table.append((title,))
        if kind == "sockperf":
            metrics = [("p50 latency, us", "p50"), ("p99 latency, us", "p99"), ("avg latency, us", "avg"), ("round trips/s", "rate")]
        elif kind == "iperf3":
            metrics = [("throughput, Gbit/s", "gbps")]
        elif kind == "idle":
            metrics = [("server CPU over the window, s", "cpu_s"), ("server RSS, MB", "rss_mb"), ("server threads", "threads"),
                       ("machine CPU over the window, s", "machine_cpu_s"), ("server syscalls over the window", "syscalls")]
        else:
            metrics = [("requests/s", "rps")]
        if kind == "iperf3":
            metrics += [("machine CPU per GB, s", "cpu_per"), ("syscalls per MB", "sys_per")]
        elif kind != "idle":
            metrics += [("machine CPU per request, us", "cpu_per"), ("syscalls per request", "sys_per")]
        for label, key in metrics:
            vs = [cell(rm.get(m), key) for m in MODES]
            table.append(("  " + label,) + tuple(s for _, s in vs) +
                         (paired_ratio(runs[rid], "ustack", "kernel", key, vs[2][0], vs[0][0]),
                          paired_ratio(runs[rid], "spin", "busy", key, vs[3][0], vs[1][0])))
        for m in MODES:
            r = rm.get(m)
            if r and r.get("failed"):
                notes.append("%s %s failed: %s" % (rid, MODE_NAMES[m], r["failed"]))
            if r and r.get("not_accelerated"):
                notes.append("* %s %s not accelerated: %s" % (rid, MODE_NAMES[m], r["not_accelerated"]))
            if r and r.get("note"):
                notes.append("%s %s: %s" % (rid, MODE_NAMES[m], r["note"]))
    ex = exec_section(res)
    if ex:
        table.append(("exec, no accelerated socket, median of 5 (kernel column: without LD_PRELOAD, ustack column: with)",))
        for label, k, u in ex:
            table.append(("  " + label, fmt(k), "", fmt(u), "", ratio(u, k), ""))
    out = render(cols, table) if table else []
    cap = capture_section(runs, rows, notes)
    if cap:
        out.extend([""] if out else [])
        out.extend(render(["ustack", "ustack + capture loop", "capture loop/ustack"], cap))
    out.append("")
    out.append("Machine CPU: busy time of all CPUs (/proc/stat user+nice+system+irq+softirq+steal) over the "
               "measured window, load client and anything else running on the machine included, divided by the "
               "work; syscalls: perf stat -e raw_syscalls:sys_enter of the process under test (attached in every "
               "mode). busy-poll and spin: %s us. * = not accelerated. Figures: each mode's median run; ratios: the "
               "median of each repeat's own ratio." % env("BUSY_US", "50"))
    if cap:
        out.append("iperf3-in-capture: the first load's figures include the CPU of the loop's onloadctl processes (on CPU %s, "
                   "beside the load client; both CPUs are busy with the load) as well as the stack's copies; during the second "
                   "load no capture runs: it shows what the start and stop of the captures left behind." % env("CAPTURE_CPU", "1"))
    if env("HAVE_PERF", "1" if any("syscalls" in r for rm in rows.values() for r in rm.values()) else "0") != "1":
        out.append("perf was not available: no system call counts.")
    if env("PROFILE") == "1":
        out.append("PROFILE=1: the ustack rows ran with a Go CPU profile and perf record attached (slower).")
    if notes:
        out.append("")
        out.extend(notes)
    text = "\n".join(out) + "\n"
    sys.stdout.write("\n" + text)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "results.txt"), "w") as f:
        f.write(text)
    settings = {k: env(k) for k in ("SOCKPERF_SECS", "REDIS_N", "WRK_SECS", "MC_SECS", "IPERF_SECS", "CAPTURE_SECS", "CAPTURE_CYCLES",
                                    "IDLE_SECS", "BUSY_US", "PROFILE", "REPEAT")}
    doc = {"settings": settings, "rows": {}, "notes": notes,
           "runs": {rid: {MODE_NAMES[m]: rs for m, rs in modes.items()} for rid, modes in runs.items()}}
    for rid, title, kind in rows_spec():
        if rid in rows:
            doc["rows"][rid] = {"title": title, "modes": {MODE_NAMES[m]: rows[rid][m] for m in MODES + ["capture"] if m in rows[rid]}}
    if ex:
        doc["rows"]["exec"] = {label: {"kernel": k, "LD_PRELOAD": u} for label, k, u in ex}
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
    panels = [(rid, rows[rid]) for rid, title, kind in rows_spec() if kind == "sockperf" and rid in rows]
    if panels:
        write_svg(svg, panels)
        print("results: %s, %s; latency percentiles: %s" % (os.path.join(outdir, "results.txt"), os.path.join(outdir, "results.json"), svg))
    else:
        print("results: %s, %s" % (os.path.join(outdir, "results.txt"), os.path.join(outdir, "results.json")))


# ---- SVG --------------------------------------------------------------------------------------

COLORS = {"kernel": "#1f77b4", "busy": "#ff7f0e", "ustack": "#2ca02c", "spin": "#d62728"}


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_svg(path, panels):
    pw, ph = 560, 340  # panel
    ml, mr, mt, mb = 60, 20, 50, 45  # plot margins inside a panel
    ncol = 2
    nrow = (len(panels) + ncol - 1) // ncol
    W, H = pw * ncol, ph * nrow + 40
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="14" text-anchor="middle">sockperf ping-pong 64 B: latency percentiles, us (log scale)</text>' % (W // 2)]
    for i, (rid, modes) in enumerate(panels):
        x0, y0 = (i % ncol) * pw, 40 + (i // ncol) * ph
        px0, py0, px1, py1 = x0 + ml, y0 + mt, x0 + pw - mr, y0 + ph - mb
        series = {m: modes[m].get("percentiles") for m in MODES if m in modes and not modes[m].get("failed") and modes[m].get("percentiles")}
        vals = [v for s in series.values() for v in s if v]
        _, proto, role = rid.split("-")
        short = "%s, %s under test in A (%s s)" % (proto.upper(), "sockperf server" if role == "server" else "sockperf ping-pong client", env("SOCKPERF_SECS", "5"))
        o.append('<text x="%d" y="%d" font-size="12" text-anchor="middle">%s</text>' % ((px0 + px1) // 2, y0 + 16, esc(short)))
        o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>' % (px0, py0, px1 - px0, py1 - py0))
        if not vals:
            o.append('<text x="%d" y="%d" text-anchor="middle">no data</text>' % ((px0 + px1) // 2, (py0 + py1) // 2))
            continue
        lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
        if hi <= lo:
            hi = lo + 1

        def ypos(v):
            return py1 - (math.log10(v) - lo) / (hi - lo) * (py1 - py0)

        def xpos(k):
            return px0 + 15 + k * (px1 - px0 - 30) / (len(PCT_LABELS) - 1)
        for e in range(lo, hi + 1):
            for mult in (1, 2, 5):
                v = mult * 10 ** e
                if v < 10 ** lo or v > 10 ** hi:
                    continue
                y = ypos(v)
                o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>' % (px0, y, px1, y, "#bbb" if mult == 1 else "#eee"))
                o.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (px0 - 4, y + 4, ("%g" % v)))
        for k, lab in enumerate(PCT_LABELS):
            x = xpos(k)
            o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>' % (x, py0, x, py1))
            o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x, py1 + 14, lab))
        o.append('<text x="%d" y="%d" text-anchor="middle">percentile</text>' % ((px0 + px1) // 2, py1 + 30))
        o.append('<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">latency, us</text>' % (x0 + 14, (py0 + py1) // 2, x0 + 14, (py0 + py1) // 2))
        for j, (m, s) in enumerate(series.items()):
            pts = ["%.1f,%.1f" % (xpos(k), ypos(v)) for k, v in enumerate(s) if v]
            o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (COLORS[m], " ".join(pts)))
            for p in pts:
                x, y = p.split(",")
                o.append('<circle cx="%s" cy="%s" r="2.5" fill="%s"/>' % (x, y, COLORS[m]))
        for j, m in enumerate(MODES):  # legend
            lx, ly = px0 + 8 + j * 125, py0 - 10
            o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>' % (lx, ly, lx + 16, ly, COLORS[m]))
            label = MODE_NAMES[m] + ("" if m in series else " (none)")
            o.append('<text x="%d" y="%d">%s</text>' % (lx + 20, ly + 4, esc(label)))
    o.append("</svg>")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "row":
        cmd_row(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "report":
        cmd_report(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
