"""What serving the web UI costs a peer (docs/benchmarks.md, "Web UI").

    cargo build --release
    python3 benches/ui.py                  # 3 modes x 1 round of 30 s at 1500/s
    python3 benches/ui.py --secs 10        # shorter

A three-peer cluster on loopback runs the same test against the built-in
target in three modes:

- none:     the first peer serves no API;
- idle:     it serves the API (--http), nobody watching;
- browser:  Debian's chromium (headless, driven by playwright) shows its
            live page for the whole test.

For the first peer it reports its CPU (user + system, percent of one core)
and resident memory over the test, and its own scheduler lag p99 from the
merged report: the UI's added cost is idle - none; a browser's effect on
pacing is browser - idle. Prints a table and one JSON line.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN = os.path.join(os.path.dirname(__file__), "..", "target", "release", "vajra-peer")
TOKEN = "benchmark-operator-token-0123"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """Samples a process's CPU time and memory every 0.5 s until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.rss, self.stop = pid, [], threading.Event()
        self.start_cpu, self.start_wall = cpu_seconds(pid), time.time()

    def run(self):
        while not self.stop.wait(0.5):
            self.rss.append(rss_mib(self.pid))

    def finish(self):
        self.stop.set()
        self.join()
        wall = time.time() - self.start_wall
        return {
            "cpu_percent": 100 * (cpu_seconds(self.pid) - self.start_cpu) / wall,
            "rss_mean_mib": sum(self.rss) / max(1, len(self.rss)),
            "rss_max_mib": max(self.rss, default=0.0),
        }


def watch_in_browser(ui, ready, done):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{ui}/#token={TOKEN}")
        page.wait_for_selector("#peers")
        page.click("a[data-view=live]")
        ready.set()
        done.wait()
        browser.close()


def run_mode(mode, args, target, work):
    ports = [free_port() for _ in range(3)]
    api_port = free_port()
    secret = os.path.join(work, "secret")
    tokens = os.path.join(work, "tokens")
    peers = []
    for i, port in enumerate(ports):
        cmd = [BIN, "join", "--listen", f"127.0.0.1:{port}", "--name", f"b{i + 1}",
               "--cluster-secret-file", secret]
        if i:
            cmd += ["--seed", f"127.0.0.1:{ports[0]}"]
        if i == 0 and mode != "none":
            cmd += ["--http", f"127.0.0.1:{api_port}", "--api-token-file", tokens]
        peers.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        wait_for_cluster(ports[0], secret)
        browser = None
        if mode == "browser":
            ready, done = threading.Event(), threading.Event()
            browser = (threading.Thread(target=watch_in_browser,
                                        args=(f"http://127.0.0.1:{api_port}", ready, done)), done)
            browser[0].start()
            if not ready.wait(60):
                raise RuntimeError("the browser never showed the live page")
        report_path = os.path.join(work, f"{mode}.json")
        sampler = Sampler(peers[0].pid)
        sampler.start()
        subprocess.run([BIN, "start", "--peer", f"127.0.0.1:{ports[0]}", "--cluster-secret-file", secret,
                        "--url", target, "--tps", str(args.tps), "--duration", f"{args.secs}s",
                        "--wait", "--output", report_path], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        measured = sampler.finish()
        if browser:
            browser[1].set()
            browser[0].join()
        with open(report_path) as f:
            report = json.load(f)
        own = report["peers"]["b1"]
        measured.update({
            "mode": mode,
            "lag_p99_us": own["scheduler_lag"]["p99_us"],
            "cluster_lag_p99_us": report["scheduler_lag"]["p99_us"],
            "completed": report["main"]["completed"],
            "planned": report["planned"],
        })
        return measured
    finally:
        for p in peers:
            p.kill()
            p.wait()


def wait_for_cluster(port, secret):
    until = time.time() + 20
    while time.time() < until:
        out = subprocess.run([BIN, "status", "--peer", f"127.0.0.1:{port}", "--cluster-secret-file", secret,
                              "--json"], capture_output=True, text=True)
        if out.returncode == 0:
            status = json.loads(out.stdout)
            alive = [m for m in status["members"] if m["state"] == "alive"]
            if len(alive) == 3 and status.get("leader"):
                return
        time.sleep(0.3)
    raise RuntimeError("the cluster did not form")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tps", type=int, default=1500)
    parser.add_argument("--secs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "secret"), "w") as f:
            f.write("benchmark cluster secret 0123456789\n")
        with open(os.path.join(work, "tokens"), "w") as f:
            f.write(f"operator {TOKEN}\n")
        target_port = free_port()
        target = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{target_port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            results = [run_mode(mode, args, f"http://127.0.0.1:{target_port}/", work)
                       for mode in ("none", "idle", "browser")]
        finally:
            target.kill()
    print(f"{'mode':<8} {'cpu %':>7} {'rss mean':>9} {'rss max':>8} {'lag p99':>9} {'completed':>10}")
    for r in results:
        print(f"{r['mode']:<8} {r['cpu_percent']:>7.1f} {r['rss_mean_mib']:>8.1f}M {r['rss_max_mib']:>7.1f}M "
              f"{r['lag_p99_us'] / 1000:>7.2f}ms {r['completed']:>10}")
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
