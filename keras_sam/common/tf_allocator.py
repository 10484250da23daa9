"""TensorFlow's CPU memory allocator: how to ask for the one that keeps freed memory.

By default TensorFlow takes each CPU tensor from the C library's malloc, which hands blocks as
large as SAM's attention scores back to the operating system when they are freed and maps fresh
pages for the next call: a vision-encoder call then spends much of its time zero-filling pages
(BENCHMARKS.md has what it costs). TensorFlow's BFC allocator keeps what it has allocated and
reuses it.

TensorFlow reads its choice from the environment variable `TF_CPU_ALLOCATOR_USE_BFC` once, when
its runtime starts (at the first TensorFlow operation of the process). The `keras-sam` command
line calls `prefer_reusing_allocator()` before TensorFlow starts, which sets it unless it is set
already (`TF_CPU_ALLOCATOR_USE_BFC=false` keeps TensorFlow's default); importing the library
changes nothing, so a program of your own sets the variable itself or calls the function first.
Once TensorFlow's runtime has started, the allocator is chosen and stays. The cost: the process holds on to its peak memory until it ends, instead of
returning it.

TensorFlow's default is not malloc everywhere: on CPUs with the instructions its oneDNN build
targets (AVX512-VNNI, AVX512-BF16, AMX), it uses oneDNN's own allocator, which also keeps freed
memory (seen on a Zen 5 CPU with AVX512_BF16; on a Zen 3 CPU the default was malloc).
"""

import os
import sys

ALLOCATOR_VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"


_tensorflow_first = False  # TensorFlow's runtime started before keras-sam was imported
_setting_then = None  # the variable at that import (None: unset)


def prefer_reusing_allocator(environ=None):
    """Asks TensorFlow for its BFC allocator on the CPU, unless the environment already says.

    Returns the variable's value afterwards. With the process's own environment (`environ`
    None, as the command line calls it), it also notes whether TensorFlow had already chosen.
    """
    global _tensorflow_first, _setting_then
    if environ is None:
        environ = os.environ
        if tensorflow_started():
            _tensorflow_first, _setting_then = True, environ.get(ALLOCATOR_VARIABLE)
    return environ.setdefault(ALLOCATOR_VARIABLE, "true")


def tensorflow_started():
    """Whether TensorFlow's runtime has started in this process (which fixes its allocator)."""
    if "tensorflow" not in sys.modules:
        return False
    from tensorflow.python.eager import context

    current = context.context_safe()
    return current is not None and getattr(current, "_initialized", True)


def asked_too_late():
    """Whether TensorFlow chose its allocator before keras-sam asked (the variable unset then)."""
    return _tensorflow_first and _setting_then is None


def allocator_in_use():
    """The CPU allocator TensorFlow uses in this process: "bfc" (TensorFlow's, asked for), "onednn"
    (oneDNN's, TensorFlow's default on some CPUs; it keeps freed memory too) or "malloc".

    Starts TensorFlow's runtime if it has not started (which fixes the choice).
    """
    import tensorflow as tf

    try:
        tf.config.experimental.get_memory_info("CPU:0")  # malloc keeps no statistics; the others do
    except ValueError:
        return "malloc"
    setting = _setting_then if _tensorflow_first else os.environ.get(ALLOCATOR_VARIABLE)
    return "bfc" if (setting or "").strip().lower() in ("true", "1") else "onednn"
