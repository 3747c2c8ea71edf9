"""Running many independent tasks: on a local process pool, or as Ray tasks on a cluster
(``mixpim sweep``, ``mixpim fuzz``). Ray is an optional extra (``pip install 'mixpim[ray]'``)."""

import os
from concurrent.futures import ProcessPoolExecutor

from ..models.errors import MixpimError

__all__ = ["ScaleoutError", "map_tasks"]


class ScaleoutError(MixpimError, RuntimeError):
    """Ray is missing or its cluster cannot be reached."""


def map_tasks(fn, tasks, *, jobs=None, ray_address=None, done=None):
    """``[fn(*t) for t in tasks]`` in order: on ``jobs`` local processes (default: the CPUs; 1:
    here), or as Ray tasks on the cluster at ``ray_address`` (``"local"``: a Ray instance started
    on this machine and stopped afterwards). ``done()`` is called as each task finishes, in order.
    ``fn`` must be a module-level function and its arguments picklable."""
    tasks = list(tasks)
    if ray_address is not None:
        return _on_ray(fn, tasks, ray_address, done)
    jobs = jobs or os.cpu_count() or 1
    out = []
    if jobs == 1 or len(tasks) <= 1:
        for t in tasks:
            out.append(fn(*t))
            done and done()
        return out
    with ProcessPoolExecutor(min(jobs, len(tasks))) as pool:
        for f in [pool.submit(fn, *t) for t in tasks]:
            out.append(f.result())
            done and done()
    return out


def _on_ray(fn, tasks, address, done):
    try:
        import ray
    except ImportError:
        raise ScaleoutError("--ray needs Ray: pip install 'mixpim[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=None if address == "local" else address, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ScaleoutError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None
    try:
        task = ray.remote(fn)
        out = []
        for ref in [task.remote(*t) for t in tasks]:
            out.append(ray.get(ref))
            done and done()
        return out
    finally:
        if started:
            ray.shutdown()
