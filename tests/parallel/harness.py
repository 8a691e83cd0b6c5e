"""Run a test function in N gloo processes on this machine (spawned, one thread each) and fail with the first
rank's error, if any. The function is a module-level ``fn(rank, world, *args)``; each rank runs it after joining
the default process group."""

import datetime
import os
import socket
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, args, errors) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a collective that one rank never joins fails after a minute instead of hanging the test run
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        fn(rank, world, *args)
        dist.barrier()
    except BaseException:  # the others may wait in a collective: they time out and report theirs after this
        errors.put((rank, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


def run_ranks(fn, world: int, *args) -> None:
    """``fn(rank, world, *args)`` on ``world`` ranks; raises ``AssertionError`` with the first failing rank's trace."""
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    mp.start_processes(_entry, args=(world, _free_port(), fn, args, errors), nprocs=world, join=True,
                       start_method="spawn")
    if not errors.empty():
        rank, trace = errors.get()
        raise AssertionError(f"rank {rank} of {world} failed:\n{trace}")
