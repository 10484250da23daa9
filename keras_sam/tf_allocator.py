"""TensorFlow's CPU memory allocator: keras-sam asks for the one that keeps freed memory.

By default TensorFlow takes each CPU tensor from the C library's malloc, which hands blocks as
large as SAM's attention scores (800 MB an image in float32) back to the operating system when
they are freed and maps fresh pages for the next call: a vision-encoder call then spends much of
its time zero-filling pages (float32 on a 2-core CPU: 18-22 s an image, 14 s with memory kept;
BENCHMARKS.md). TensorFlow's BFC allocator keeps what it has allocated and reuses it.

TensorFlow reads its choice from the environment variable `TF_CPU_ALLOCATOR_USE_BFC` once, when
its runtime starts (at the first TensorFlow operation of the process), so `import keras_sam` sets
it unless it is set already: `TF_CPU_ALLOCATOR_USE_BFC=false` keeps malloc. In a process that ran
TensorFlow operations before importing keras-sam, the allocator is already chosen and stays.
The cost: the process holds on to its peak memory until it ends, instead of returning it.
"""

import os

ALLOCATOR_VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"


def prefer_reusing_allocator(environ=None):
    """Asks TensorFlow for its BFC allocator on the CPU, unless the environment already says.

    Returns the variable's value afterwards.
    """
    environ = os.environ if environ is None else environ
    return environ.setdefault(ALLOCATOR_VARIABLE, "true")


def asks_for_reusing_allocator():
    """Whether the environment asks TensorFlow for its BFC allocator."""
    return os.environ.get(ALLOCATOR_VARIABLE, "").strip().lower() in ("true", "1")


def allocator_in_use():
    """The CPU allocator TensorFlow uses in this process: "bfc" or "malloc".

    Starts TensorFlow's runtime if it has not started (which fixes the choice).
    """
    import tensorflow as tf

    try:
        tf.config.experimental.get_memory_info("CPU:0")  # only the BFC allocator keeps statistics
    except ValueError:
        return "malloc"
    return "bfc"
