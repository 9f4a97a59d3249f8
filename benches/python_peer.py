"""The Python side of the benches (`benches/common/`): the same workloads on
multiprocessing.Pool, concurrent.futures.ProcessPoolExecutor and multiprocessing.Queue.

Usage: python3 benches/python_peer.py WORKLOAD [N]

Runs one timed run of WORKLOAD with N items (default: the bench's default size) and
prints the elapsed wall time in seconds, as a bare float on the last line of stdout.
Pool creation (and a warm-up task) is outside the timing except for `start_spawn`,
which measures exactly that. The pools have 2 workers started by fork (Linux's default
before Python 3.14, named explicitly), as the Rust side uses StartMethod::Fork.

Plain Python 3, standard library only.
"""

import hashlib
import concurrent.futures
import multiprocessing
import sys
import time

PROCS = 2

# Rounds of the chained sha512 in the cpu workload; must match CHAIN_ROUNDS in
# benches/common/pool.rs.
CHAIN_ROUNDS = 20_000


def inc(x):
    """The tiny task: x + 1."""
    return x + 1


def echo(payload):
    """Returns its bytes payload unchanged."""
    return payload


def chain(s):
    """h = lowercase hex(sha512(h)), CHAIN_ROUNDS times, starting from s's bytes."""
    h = s.encode()
    for _ in range(CHAIN_ROUNDS):
        h = hashlib.sha512(h).hexdigest().encode()
    return h.decode()


def warm_pool():
    """A started pool whose workers have each been up long enough to answer."""
    pool = multiprocessing.get_context("fork").Pool(PROCS)
    pool.map(inc, range(4 * PROCS), chunksize=1)
    return pool


def apply_round_trip(n):
    """n `apply` calls of inc, one at a time."""
    with warm_pool() as pool:
        t = time.perf_counter()
        for i in range(n):
            assert pool.apply(inc, (i,)) == i + 1
        return time.perf_counter() - t


def apply_async_many(n):
    """n `apply_async` calls of inc, then `.get()` of every result."""
    with warm_pool() as pool:
        t = time.perf_counter()
        results = [pool.apply_async(inc, (i,)) for i in range(n)]
        for i, r in enumerate(results):
            assert r.get() == i + 1
        return time.perf_counter() - t


def submit_many(n):
    """n `ProcessPoolExecutor.submit` calls of inc, then `.result()` of every future."""
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(PROCS, mp_context=ctx) as pool:
        list(pool.map(inc, range(4 * PROCS)))
        t = time.perf_counter()
        futures = [pool.submit(inc, i) for i in range(n)]
        for i, f in enumerate(futures):
            assert f.result() == i + 1
        return time.perf_counter() - t


def map_tiny(n):
    """`map` of inc over range(n) with the default chunk size."""
    with warm_pool() as pool:
        t = time.perf_counter()
        out = pool.map(inc, range(n))
        elapsed = time.perf_counter() - t
        assert len(out) == n and out[-1] == n
        return elapsed


def sleep_line(line):
    """What `supervisor run --task sleep` does with a line like `0ms`."""
    ms = int(line.strip().removesuffix("ms"))
    if ms:
        time.sleep(ms / 1000)
    return line


def cli_lines(n):
    """The CLI's job in Python: n lines `0ms` through Pool(2).map (its default chunks),
    results written in input order; the pool's creation included, as a run's is."""
    lines = ["0ms\n"] * n
    t = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(PROCS) as pool, open("/dev/null", "w") as out:
        for line in pool.map(sleep_line, lines):
            out.write(line)
    return time.perf_counter() - t


def bytes_round_trip(n):
    """n `apply` calls of echo with a 1 MiB bytes payload."""
    payload = bytes(range(256)) * 4096  # 1 MiB
    with warm_pool() as pool:
        t = time.perf_counter()
        for _ in range(n):
            back = pool.apply(echo, (payload,))
            assert len(back) == len(payload)
        return time.perf_counter() - t


def rss_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def big_round_trip(mib, measure):
    """One `apply` of echo with a `mib` MiB bytes payload: its time, or (`measure` =
    "rss") the parent's peak RSS above what it held before (its own payload included),
    in KiB printed as if nanoseconds."""
    payload = b"\x01" * (mib << 20)
    with warm_pool() as pool:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS to the current RSS
        before = rss_kib("VmRSS")
        t = time.perf_counter()
        back = pool.apply(echo, (payload,))
        elapsed = time.perf_counter() - t
        assert len(back) == len(payload)
        grew = rss_kib("VmHWM") - before
        return elapsed if measure == "time" else grew * 1e-9


def cpu_map(n):
    """`map` of chain over n inputs ("input-0", "input-1", ...)."""
    inputs = [f"input-{i}" for i in range(n)]
    with warm_pool() as pool:
        t = time.perf_counter()
        out = pool.map(chain, inputs)
        elapsed = time.perf_counter() - t
        assert len(out) == n and all(len(h) == 128 for h in out)
        return elapsed


def start_spawn(procs):
    """A spawn-context Pool of `procs` workers, from creation to the first apply's result."""
    ctx = multiprocessing.get_context("spawn")
    t = time.perf_counter()
    pool = ctx.Pool(procs)
    assert pool.apply(inc, (1,)) == 2
    elapsed = time.perf_counter() - t
    pool.terminate()
    pool.join()
    return elapsed


def start_stop_spawn(procs):
    """A spawn-context Pool of `procs` workers from creation to the first apply's
    result, then stopped (close + join: every worker gone)."""
    ctx = multiprocessing.get_context("spawn")
    t = time.perf_counter()
    pool = ctx.Pool(procs)
    assert pool.apply(inc, (1,)) == 2
    pool.close()
    pool.join()
    return time.perf_counter() - t


def produce(q, n):
    """Puts n items of 64 bytes on q."""
    item = b"x" * 64
    for _ in range(n):
        q.put(item)


def queue_items(n):
    """n 64-byte items from a producer process to this one through a
    multiprocessing.Queue, timed from the first item received to the last (n - 1 items)."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=produce, args=(q, n))
    p.start()
    q.get()
    t = time.perf_counter()
    for _ in range(n - 1):
        q.get()
    elapsed = time.perf_counter() - t
    p.join()
    return elapsed


def send_down(conn, n):
    """Sends n items of 64 bytes down conn."""
    item = b"x" * 64
    for _ in range(n):
        conn.send_bytes(item)


def pipe_items(n):
    """n 64-byte items from a producer process to this one through a
    multiprocessing.Pipe, timed from the first item received to the last (n - 1 items)."""
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe(duplex=False)
    p = ctx.Process(target=send_down, args=(theirs, n))
    p.start()
    theirs.close()
    mine.recv_bytes()
    t = time.perf_counter()
    for _ in range(n - 1):
        mine.recv_bytes()
    elapsed = time.perf_counter() - t
    p.join()
    return elapsed


WORKLOADS = {
    "apply": (apply_round_trip, 2_000),
    "apply_async": (apply_async_many, 20_000),
    "submit": (submit_many, 20_000),
    "map": (map_tiny, 1_000_000),
    "bytes": (bytes_round_trip, 256),
    "cpu": (cpu_map, 16),
    "start_spawn": (start_spawn, 8),
    "queue": (queue_items, 200_000),
    "pipe": (pipe_items, 200_000),
    "cli_lines": (cli_lines, 100_000),
    "start_stop_spawn": (start_stop_spawn, 8),
    "big_time": (lambda n: big_round_trip(n, "time"), 100),
    "big_rss": (lambda n: big_round_trip(n, "rss"), 100),
}


def main():
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in WORKLOADS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(WORKLOADS)}}} [N]")
    run, default_n = WORKLOADS[sys.argv[1]]
    n = int(sys.argv[2]) if len(sys.argv) == 3 else default_n
    print(f"{run(n):.9f}")


if __name__ == "__main__":
    main()
