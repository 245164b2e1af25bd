#!/usr/bin/env python3
"""Package benchmark (scripts/bench package): size, zip size, init and cold first response of
release-built functions, as ratios to a bare lambda_http function built with the same profile.

For each binary and each of N runs: start it against a stub Lambda Runtime API on loopback; the
clock starts at exec and stops at the first GET /runtime/invocation/next (init), then the stub
serves one sample event (events/<function>.json) and the clock stops at the function's POST of
its response, or of its error for the authorizer, which refuses the sample's unknown key after
its GetItem (cold first response). AWS calls go to the local emulator (AWS_ENDPOINT_URL).
Usage: package_bench.py TARGET_DIR RUNS FUNCTION... (bare-lambda is always measured first)."""
import http.server, io, json, os, statistics, subprocess, sys, threading, time, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {"api": 2.0e6, "worker": 4.0e6}


class Stub(http.server.BaseHTTPRequestHandler):
    """The Runtime API: one event, then the test is over."""
    event = b"{}"
    marks = {}
    served = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        if "/runtime/invocation/next" not in self.path:
            self.send_error(404)
            return
        Stub.marks.setdefault("init", time.perf_counter())
        if Stub.served:
            # Hold the runtime here until it is killed: one event per run.
            time.sleep(30)
            return
        Stub.served = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-request-0001")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:bench")
        self.send_header("Content-Length", str(len(Stub.event)))
        self.end_headers()
        self.wfile.write(Stub.event)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        kind = "response" if self.path.endswith("/response") else "error"
        Stub.marks.setdefault(kind, time.perf_counter())
        Stub.marks.setdefault("body", body[:300])
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def measure(binary, event, env):
    Stub.marks, Stub.served, Stub.event = {}, False, event
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run_env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}")
    started = time.perf_counter()
    proc = subprocess.Popen([binary], env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while "response" not in Stub.marks and "error" not in Stub.marks and time.time() < deadline:
            time.sleep(0.0005)
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
        server.server_close()
    # The authorizer answers an unknown key with its "Unauthorized" error: that is its response.
    answered = Stub.marks.get("response", Stub.marks.get("error"))
    if "init" not in Stub.marks or answered is None:
        raise SystemExit(f"{binary}: no response from the stub run: {Stub.marks}")
    return (Stub.marks["init"] - started) * 1000, (answered - started) * 1000


def zipped_size(path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.write(path, "bootstrap")
    return len(buffer.getvalue())


def main():
    target_dir, runs, functions = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    # As Lambda runs a function: no RUST_BACKTRACE (with it, errors the SDK builds at init
    # capture and resolve backtraces, which costs milliseconds the deployed function never pays).
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    env.update({"AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "LOG_LEVEL": "warn"})
    rows = []
    for name in ["bare-lambda"] + functions:
        binary = os.path.join(target_dir, name, "bootstrap")
        event_name = {"bare-lambda": "health-live", "execution-worker": "execution-worker"}.get(name, name)
        with open(os.path.join(ROOT, "events", f"{event_name}.json"), "rb") as f:
            event = f.read()
        measure(binary, event, env)  # page cache warm-up, not counted
        inits, firsts = [], []
        for _ in range(runs):
            init, first = measure(binary, event, env)
            inits.append(init)
            firsts.append(first)
        rows.append((name, os.path.getsize(binary), zipped_size(binary), statistics.median(inits), statistics.median(firsts)))
    bare = rows[0]
    print(f"| binary | stripped | zipped | zip target | init median | init / bare | first response median | first / bare |")
    print("|---|---|---|---|---|---|---|---|")
    for name, size, zipped, init, first in rows:
        target = "" if name == "bare-lambda" else ("4.0 MB" if name == "execution-worker" else "2.0 MB")
        print(f"| {name} | {size / 1e6:.2f} MB | {zipped / 1e6:.2f} MB | {target} | {init:.2f} ms | {init / bare[3]:.2f}x "
              f"| {first:.2f} ms | {first / bare[4]:.2f}x |")


if __name__ == "__main__":
    main()
