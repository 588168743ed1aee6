#!/usr/bin/env python3
# Run as root from the workspace: python3 agent/benches/hostile.py [--agent PATH] [--before PATH]
"""ipa-agent vs ironic-python-agent 13.0.0 on a hostile network (issue 13), in one run.

Each agent starts without an Ironic URL, with a pre-shared token, serving
plain HTTP on 127.0.0.1 (IPA confined as in compare.py: private mount
namespace, tmpfs overlay on /etc). Measured for each:

1. load: 200 idle connections, then 60 connections that each declare a
   2 MB body without a token and send 1.9 MB of it, all held open. Peak RSS
   and peak open file descriptors of the agent over 4 s, and whether (and
   how fast) a legitimate client then gets GET /v1/status answered.
2. exit: 20 idle connections and one that sent a single byte are held open
   while rescue.finalize_rescue is called; the time from its answer to the
   process's exit (capped at 45 s).

Bounded: fixed connection counts, every socket has a timeout, every wait
has a cap; all traffic goes to 127.0.0.1. `--before PATH` adds an older
ipa-agent binary to the same run for a before/after column.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (venv handling, ports, RSS, the keep-alive client)

IDLE = 200
BODIES = 60
DECLARED = 2_000_000
SENT = 1_900_000
EXIT_HELD = 20
EXIT_CAP = 45.0
HASH = "$6$benchsalt$" + "A" * 86


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def ipa_cmd(venv: Path, port: int, token: str, scratch: str) -> list:
    """compare.py's confinement, plus the directory IPA's finalize_rescue
    writes into (IPA does not create it; its image does)."""
    ipa = f"{venv}/bin/python {venv}/bin/ironic-python-agent"
    script = (
        f"mount -t tmpfs ipa-bench {scratch} && mkdir {scratch}/u {scratch}/w && "
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={scratch}/u,workdir={scratch}/w /etc && "
        f"mkdir -p /etc/ipa-rescue-config && "
        f"exec {ipa} --listen_host 127.0.0.1 --listen_port {port} --agent_token {token} "
        f"--disk_wait_attempts 0 --noenable_auto_tls"
    )
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]


def start(make_cmd, token: str, scratch: str):
    port = compare.free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(make_cmd(port, token, scratch), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    compare.first_200(port, proc, started)
    return proc, port


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def close_all(socks: list):
    """Closes every socket in `socks`, whatever state it is in."""
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def body_sender(port: int, held: list, stop: threading.Event):
    """Declares a 2 MB body with no token and sends 1.9 MB of it."""
    try:
        s = connect(port)
    except OSError:
        return
    held.append(s)
    head = (f"POST /v1/commands/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {DECLARED}\r\n\r\n").encode()
    chunk = b"x" * 65536
    try:
        s.sendall(head)
        sent = 0
        while sent < SENT and not stop.is_set():
            n = min(len(chunk), SENT - sent)
            s.sendall(chunk[:n])
            sent += n
    except OSError:
        pass  # refused early: the point of the exercise


def legit_status(port: int) -> str:
    t0 = time.perf_counter()
    try:
        c = compare.Client(port)
        c.sock.settimeout(5)
        status = c.get("/v1/status")
        c.close()
        return f"{status} in {(time.perf_counter() - t0) * 1000:.0f} ms"
    except (OSError, ConnectionError, RuntimeError) as e:
        return f"failed after {(time.perf_counter() - t0) * 1000:.0f} ms ({type(e).__name__})"


def load(name: str, make_cmd) -> dict:
    token = "bench-" + os.urandom(16).hex()
    with tempfile.TemporaryDirectory(prefix="ipa-hostile-") as scratch:
        proc, port = start(make_cmd, token, scratch)
        held, stop = [], threading.Event()
        try:
            time.sleep(0.5)
            out = {"idle_rss": compare.rss_kib(proc.pid), "idle_fds": fds(proc.pid)}
            for _ in range(IDLE):
                try:
                    held.append(connect(port))
                except OSError:
                    break
            out["idle_opened"] = len(held)
            threads = [threading.Thread(target=body_sender, args=(port, held, stop), daemon=True)
                       for _ in range(BODIES)]
            for t in threads:
                t.start()
            peak_rss, peak_fds = 0, 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 4.0 and proc.poll() is None:
                peak_rss = max(peak_rss, compare.rss_kib(proc.pid))
                peak_fds = max(peak_fds, fds(proc.pid))
                time.sleep(0.05)
            out["peak_rss"], out["peak_fds"] = peak_rss, peak_fds
            out["legit"] = legit_status(port) if proc.poll() is None else f"agent died ({proc.returncode})"
        finally:
            stop.set()
            close_all(held)
            compare.stop(proc)
    print(f"  {name}: load done", file=sys.stderr)
    return out


def finalize_exit(name: str, make_cmd) -> str:
    token = "bench-" + os.urandom(16).hex()
    with tempfile.TemporaryDirectory(prefix="ipa-hostile-") as scratch:
        proc, port = start(make_cmd, token, scratch)
        held = []
        try:
            for _ in range(EXIT_HELD):
                held.append(connect(port))
            dribbler = connect(port)
            dribbler.sendall(b"G")
            held.append(dribbler)
            body = ('{"name":"rescue.finalize_rescue","params":{"rescue_password":"%s","hashed":true}}'
                    % HASH).encode()
            c = connect(port)
            c.sendall(f"POST /v1/commands/?agent_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            c.settimeout(15)
            asked = time.perf_counter()
            try:
                reply = c.recv(65536)
            except OSError:
                return f"finalize_rescue unanswered after {time.perf_counter() - asked:.0f} s"
            answered = time.perf_counter()
            status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else "?"
            c.close()
            while proc.poll() is None and time.perf_counter() - answered < EXIT_CAP:
                time.sleep(0.01)
            took = time.perf_counter() - answered
            if proc.poll() is None:
                result = f"still running after {EXIT_CAP:.0f} s (finalize answered {status})"
            else:
                result = f"{took:.2f} s, exit {proc.returncode} (finalize answered {status})"
        finally:
            close_all(held)
            compare.stop(proc)
    print(f"  {name}: exit done", file=sys.stderr)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = compare.WORKSPACE / "target" / compare.MUSL / "agent" / "ipa-agent"
    parser.add_argument("--agent", type=Path, default=default, help=f"ipa-agent binary (default {default})")
    parser.add_argument("--before", type=Path, help="an older ipa-agent binary for a before/after column")
    args = parser.parse_args()
    compare.require_root_and_lshw()
    if not args.agent.is_file():
        sys.exit(f"{args.agent} missing: cargo build --profile agent --target {compare.MUSL} -p ipa-agent")
    venv = compare.ensure_ipa_venv()

    agents = []
    roots = []
    for label, binary in (("ipa-agent", args.agent), ("ipa-agent before", args.before)):
        if binary:
            root = tempfile.mkdtemp(prefix="ipa-hostile-root-")
            roots.append(root)
            agents.append((label, lambda p, t, s, b=binary, r=root: compare.ours_cmd(b, p, t, r)))
    agents.append(("ironic-python-agent 13.0.0", lambda p, t, s: ipa_cmd(venv, p, t, s)))

    results = {}
    for label, make in agents:
        results[label] = (load(label, make), finalize_exit(label, make))
    for r in roots:
        shutil.rmtree(r, ignore_errors=True)

    mib = 1024.0
    labels = [label for label, _ in agents]
    print(f"\n{os.uname().nodename}, {os.cpu_count()} CPUs; {IDLE} idle connections + {BODIES} "
          f"unauthenticated POSTs declaring {DECLARED} bytes and sending {SENT}\n")
    print("| metric | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    rows = [
        ("idle RSS (MiB)", lambda l, e: f"{l['idle_rss'] / mib:.1f}"),
        ("peak RSS under load (MiB)", lambda l, e: f"{l['peak_rss'] / mib:.1f}"),
        ("open fds idle / peak under load", lambda l, e: f"{l['idle_fds']} / {l['peak_fds']}"),
        (f"idle connections the client opened (of {IDLE})", lambda l, e: str(l["idle_opened"])),
        ("legitimate GET /v1/status under load", lambda l, e: l["legit"]),
        (f"finalize_rescue answered to exit, {EXIT_HELD + 1} connections held", lambda l, e: e),
    ]
    for title, cell in rows:
        print(f"| {title} | " + " | ".join(cell(*results[label]) for label in labels) + " |")


if __name__ == "__main__":
    main()
