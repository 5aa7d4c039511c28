"""Shared by the benchmarks: run a measurement in a fresh process, and read this process's memory counters."""
import multiprocessing as mp
import queue


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` counter in kB (``VmRSS``, ``VmHWM``, ...)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def in_process(target, *args):
    """``target(*args, result_queue)`` in a spawned process (clean allocator and memory counters); its result."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    while True:  # a child that dies puts nothing: poll, so its failure ends the run instead of hanging it
        try:
            result = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"benchmark process {target.__name__}{args[:3]} failed (exit code {p.exitcode})")
    p.join()
    return result
