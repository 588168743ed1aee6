#!/usr/bin/env python3
# Run as root from anywhere: python3 agent/benches/compare.py [--runs 7] [--agent PATH]  (needs: apt-get install -y lshw)
"""Compare ipa-agent with ironic-python-agent 13.0.0 on this machine, in one run.

Both agents start without an Ironic URL, with a pre-shared token, serving
plain HTTP on 127.0.0.1. Measured for each:

- spawn to the first 200 on GET / (median of --runs runs),
- RSS when idle (1 s after the first 200) and after 1000 GET /v1/commands/,
- requests per second on one keep-alive connection (GET /v1/commands/),
- for ipa-agent, the size of the static musl binary (agent profile).

ironic-python-agent is installed from PyPI into <workspace>/target/e2e/venv-ipa
(IPA_E2E_DIR moves it) the first time. It writes to /etc, so it runs inside a
private mount namespace (unshare -m) with a tmpfs-backed overlay on /etc: the
host's /etc is never modified. That needs root. It crashes without `lshw`.

The same client (a minimal HTTP/1.1 keep-alive client over a raw socket,
below) drives both agents, so its own cost is the same on both sides; with
ipa-agent the client, not the server, is usually the limit.
"""

import argparse
import fcntl
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKSPACE = Path(__file__).resolve().parents[2]
IPA_REQUIREMENT = "ironic-python-agent==13.0.0"
MUSL = "x86_64-unknown-linux-musl"
TARGETS = {"first_200_ms": 10.0, "idle_rss_mib": 4.0, "binary_mib": 4.0}


def e2e_dir() -> Path:
    return Path(os.environ.get("IPA_E2E_DIR") or WORKSPACE / "target" / "e2e")


def ensure_ipa_venv() -> Path:
    """Builds the IPA venv once (temp dir + rename, under a lock), like the Rust harness."""
    base = e2e_dir()
    base.mkdir(parents=True, exist_ok=True)
    root = base / "venv-ipa"
    marker = root / "ipa-e2e-requirements.txt"
    wanted = IPA_REQUIREMENT + "\n"
    with open(base / "venv-ipa.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == wanted:
            return root
        if root.exists():
            shutil.rmtree(root)
        for leftover in base.glob("venv-ipa.tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = base / f"venv-ipa.tmp-{os.getpid()}"
        log = base / "venv-ipa.install.log"
        started = time.monotonic()
        print(f"creating {root} with {IPA_REQUIREMENT} (log: {log})", file=sys.stderr)
        with open(log, "w") as out:
            for cmd in (
                [sys.executable, "-m", "venv", str(tmp)],
                [str(tmp / "bin" / "python"), "-m", "pip", "install",
                 "--disable-pip-version-check", "--no-input", IPA_REQUIREMENT],
            ):
                if subprocess.run(cmd, stdout=out, stderr=out).returncode != 0:
                    shutil.rmtree(tmp, ignore_errors=True)
                    sys.exit(f"`{' '.join(cmd)}` failed; see {log}")
        (tmp / "ipa-e2e-requirements.txt").write_text(wanted)
        tmp.rename(root)
        print(f"venv ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
        return root


def build_agent() -> Path:
    """The shipped binary: static musl, `agent` profile, in target/agent."""
    target_dir = WORKSPACE / "target" / "agent"
    env = dict(os.environ, CARGO_TARGET_DIR=str(target_dir))
    cmd = ["cargo", "build", "--profile", "agent", "--target", MUSL, "-p", "ipa-agent", "--bin", "ipa-agent"]
    if subprocess.run(cmd, cwd=WORKSPACE, env=env).returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed")
    return target_dir / MUSL / "agent" / "ipa-agent"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """HTTP/1.1 keep-alive GETs over one socket; reads exactly Content-Length bytes."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self, path: str) -> int:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("chunked replies are not supported by this client")
        while len(self.buf) < length:
            self._fill()
        self.buf = self.buf[length:]
        return status

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def close(self):
        self.sock.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def first_200(port: int, proc: subprocess.Popen, started: float, timeout: float = 60.0) -> float:
    """Seconds from `started` to the first 200 on GET /."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode} before answering")
        try:
            client = Client(port)
            try:
                if client.get("/") == 200:
                    return time.perf_counter() - started
            finally:
                client.close()
        except OSError:
            pass
        if time.perf_counter() - started > timeout:
            raise RuntimeError("no 200 on GET / within 60 s")
        time.sleep(0.0005)


def stop(proc: subprocess.Popen):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ours_cmd(binary: Path, port: int, token: str, root: str) -> list:
    return [str(binary), "--root", root, "--listen-host", "127.0.0.1", "--listen-port", str(port),
            "--agent-token", token]


def ipa_cmd(venv: Path, port: int, token: str, scratch: str) -> list:
    # Private mount namespace; /etc becomes an overlay whose upper layer is a
    # tmpfs that vanishes with the namespace. `unshare` without --fork and
    # `exec` keep one pid, so RSS is read from the agent itself.
    ipa = f"{venv}/bin/python {venv}/bin/ironic-python-agent"
    script = (
        f"mount -t tmpfs ipa-bench {scratch} && mkdir {scratch}/u {scratch}/w && "
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={scratch}/u,workdir={scratch}/w /etc && "
        f"exec {ipa} --listen_host 127.0.0.1 --listen_port {port} --agent_token {token} "
        f"--disk_wait_attempts 0 --noenable_auto_tls"
    )
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]


def measure(name: str, make_cmd, runs: int, requests: int) -> dict:
    token = secrets.token_urlsafe(32)
    times = []
    result = {}
    for run in range(runs):
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="ipa-bench-") as scratch:
            started = time.perf_counter()
            proc = subprocess.Popen(make_cmd(port, token, scratch), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                times.append(first_200(port, proc, started))
                if run == runs - 1:
                    time.sleep(1.0)
                    result["idle_rss_kib"] = rss_kib(proc.pid)
                    client = Client(port)
                    path = f"/v1/commands/?agent_token={token}"
                    for _ in range(requests):
                        status = client.get(path)
                        if status != 200:
                            raise RuntimeError(f"{name}: GET /v1/commands/ answered {status}")
                    result["rss_after_kib"] = rss_kib(proc.pid)
                    # Throughput: as many keep-alive requests as fit in 3 s.
                    count, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < 3.0:
                        client.get(path)
                        count += 1
                    result["rps"] = count / (time.perf_counter() - t0)
                    client.close()
            finally:
                stop(proc)
    result["first_200_ms"] = statistics.median(times) * 1000
    result["first_200_all"] = times
    return result


def require_root_and_lshw():
    """Exits unless ironic-python-agent can run here: as root, with lshw."""
    if os.geteuid() != 0:
        sys.exit("run as root: ironic-python-agent is confined with unshare -m and an overlay on /etc")
    if shutil.which("lshw") is None:
        sys.exit("ironic-python-agent crashes without lshw: apt-get install -y lshw")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="start-up runs per agent (median)")
    parser.add_argument("--requests", type=int, default=1000, help="GETs before the second RSS reading")
    parser.add_argument("--agent", type=Path, help="prebuilt ipa-agent (default: build it)")
    args = parser.parse_args()

    require_root_and_lshw()
    binary = args.agent or build_agent()
    venv = ensure_ipa_venv()

    with tempfile.TemporaryDirectory(prefix="ipa-bench-root-") as root:
        ours = measure("ipa-agent", lambda p, t, s: ours_cmd(binary, p, t, root), args.runs, args.requests)
    ref = measure("ironic-python-agent", lambda p, t, s: ipa_cmd(venv, p, t, s), args.runs, args.requests)

    mib = 1024.0
    size = binary.stat().st_size / (1024 * 1024)
    # (label, ours, IPA, format, target key, higher is better)
    rows = [
        ("spawn to first 200 on GET / (median, ms)", ours["first_200_ms"], ref["first_200_ms"], "{:.1f}",
         "first_200_ms", False),
        ("idle RSS (MiB)", ours["idle_rss_kib"] / mib, ref["idle_rss_kib"] / mib, "{:.2f}", "idle_rss_mib", False),
        (f"RSS after {args.requests} GET /v1/commands/ (MiB)", ours["rss_after_kib"] / mib,
         ref["rss_after_kib"] / mib, "{:.2f}", None, False),
        ("requests/s, one keep-alive connection", ours["rps"], ref["rps"], "{:.0f}", None, True),
        ("binary size, static musl `agent` profile (MiB)", size, None, "{:.2f}", "binary_mib", False),
    ]
    print(f"\n{os.uname().nodename}, {os.cpu_count()} CPUs, {args.runs} start-up runs each\n")
    print("| metric | ipa-agent | ironic-python-agent 13.0.0 | ratio (ours better by) | target (ours) |")
    print("|---|---:|---:|---:|---|")
    failed = []
    for label, a, b, fmt, key, higher_better in rows:
        ratio = "" if b is None else f"{(a / b if higher_better else b / a):.1f}x"
        target = ""
        if key:
            ok = a < TARGETS[key] if key != "first_200_ms" else a <= TARGETS[key]
            target = f"{'≤' if key == 'first_200_ms' else '<'} {TARGETS[key]:g}: {'met' if ok else 'MISSED'}"
            if not ok:
                failed.append(label)
        print(f"| {label} | {fmt.format(a)} | {'n/a' if b is None else fmt.format(b)} | {ratio} | {target} |")
    print()
    print("start-up runs (ms): ipa-agent", [round(t * 1000, 1) for t in ours["first_200_all"]],
          "| IPA", [round(t * 1000) for t in ref["first_200_all"]])
    if failed:
        print("targets missed: " + "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
