"""Speed options chosen on the machine that runs, by measurement, not by a guess.

XLA (`jit_compile`) for the mask decoder's training step from cached embeddings has been seen
1.44x faster on one 2-core machine and 1.26x and 2.08x slower on others: when the run leaves it
unset and is long enough to repay the measuring, a probe times a few steps each way and keeps the
faster. Lower precision for the whole run (`mixed_bfloat16`) is used only where the CPU has
bfloat16 instructions. The command line asks for TensorFlow's CPU allocator before TensorFlow
starts (`keras_sam.common.tf_allocator`); the run says which it got.
"""

import contextlib
import dataclasses
import os
import time

import tf_keras as keras

from keras_sam.common import tf_allocator
from keras_sam.app.defaults import MIN_STEPS_TO_PROBE
from keras_sam.tfkeras.segmenter import default_optimizer
from keras_sam.common.tf_allocator import ALLOCATOR_VARIABLE

PROBE_STEPS = 4


@dataclasses.dataclass(frozen=True)
class SpeedChoice:
    """One option the run uses, and why (recorded in the run folder's speed.json)."""

    value: object
    reason: str
    seconds_per_step: dict = dataclasses.field(default_factory=dict)

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload):
        return cls(**payload)


def choose_precision(asked, cpu_has_bfloat16, why="asked for"):
    """The Keras precision policy for the run: what was asked for (`why` says by whom), or for
    "auto" bfloat16 where the CPU has bfloat16 instructions (see BENCHMARKS.md for what it gains
    and what it costs)."""
    if asked != "auto":
        return SpeedChoice(asked, why)
    if cpu_has_bfloat16:
        return SpeedChoice("mixed_bfloat16", "the CPU has bfloat16 instructions (avx512_bf16 or amx_bf16)")
    return SpeedChoice("float32", "the CPU has no bfloat16 instructions")


def allocator_choice():
    """TensorFlow's CPU allocator in this process ("bfc", "onednn" or "malloc") and why, as a
    SpeedChoice."""
    setting = f"{ALLOCATOR_VARIABLE}={os.environ.get(ALLOCATOR_VARIABLE, '(unset)')}"
    in_use = tf_allocator.allocator_in_use()
    if in_use == "bfc":
        return SpeedChoice("bfc", f"keeps freed memory for reuse; {setting}")
    if tf_allocator.asked_too_late():
        why = f"TensorFlow started before keras-sam asked for it, so {setting} came too late"
    else:
        why = f"{setting} in the environment"
    if in_use == "onednn":
        return SpeedChoice("onednn", f"TensorFlow's default on this CPU, keeps freed memory too; {why}")
    return SpeedChoice("malloc", why)


@contextlib.contextmanager
def precision_policy(name):
    """Keras's global precision policy set to `name` while models are built, then restored."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def too_short_to_probe(total_steps):
    """The choice for a run of `total_steps` training steps too short to repay the probe, or None."""
    if total_steps >= MIN_STEPS_TO_PROBE:
        return None
    return SpeedChoice(False, f"{total_steps} training steps are too few to repay measuring it "
                              f"(measured from {MIN_STEPS_TO_PROBE} steps)")


def choose_jit_compile(measure):
    """Times the training step without XLA and with it; keeps the faster (off on a tie).

    Args:
        measure: callable(jit_compile) -> seconds per training step, compilation excluded.

    Returns:
        SpeedChoice whose value is the choice (True: XLA).
    """
    timings = {"without_xla": measure(False), "with_xla": measure(True)}
    faster = timings["with_xla"] < timings["without_xla"]
    ratio = max(timings.values()) / max(min(timings.values()), 1e-9)
    reason = (f"measured on this machine: {timings['with_xla']:.3f} s a step with XLA, "
              f"{timings['without_xla']:.3f} s without ({ratio:.2f}x {'faster' if faster else 'slower'} "
              f"with XLA)")
    return SpeedChoice(faster, reason, timings)


def step_timer(model, dataset, loss, steps=PROBE_STEPS):
    """A `measure` for `choose_jit_compile`: seconds per training step of `model` on `dataset`.

    The model is compiled with an optimizer at learning rate 0 so no weight moves; one step
    traces (and compiles) first and is not counted. Recompile the model for training afterwards.
    """
    batches = [batch for _, batch in zip(range(steps + 1), dataset)]

    def measure(jit_compile):
        model.compile(optimizer=default_optimizer(0.0), loss=loss, metrics=[], jit_compile=jit_compile)
        model.train_on_batch(*batches[0])
        started = time.perf_counter()
        for batch in batches[1:]:
            model.train_on_batch(*batch)
        return (time.perf_counter() - started) / max(1, len(batches) - 1)

    return measure


def cpu_supports_bfloat16(cpuinfo="/proc/cpuinfo"):
    """True where the CPU reports bfloat16 instructions (AVX512_BF16 or AMX_BF16; Linux only)."""
    try:
        with open(cpuinfo) as handle:
            flags = {flag for line in handle if line.startswith("flags") for flag in line.split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})
