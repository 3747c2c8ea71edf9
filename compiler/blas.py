"""The float models run their matrix products on one BLAS thread.

A threaded BLAS sums a product in an order that depends on its thread count, so the float32
results, and with them the calibration ranges (hence every quantized scale of the compiled model)
and the float reference's tokens, would depend on the machine's ``OPENBLAS_NUM_THREADS``: seen
on SmolLM2, whose 24-token greedy generation on the tile changed from the 11th token on (a
near-tie) between the default threads and one. ``threadpoolctl`` sets the limit in-process, for
any BLAS numpy loaded (docs/decisions.md)."""

from functools import wraps

from threadpoolctl import threadpool_limits

__all__ = ["one_blas_thread"]


def one_blas_thread(f):
    """``f`` run with BLAS limited to one thread."""
    @wraps(f)
    def run(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return f(*args, **kwargs)
    return run
