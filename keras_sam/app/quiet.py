"""What the command line keeps out of its output: TensorFlow's native log lines and warnings that
say nothing to a keras-sam user.

TensorFlow 2.21 writes through absl's C++ logging: at import (oneDNN, CUDA stubs, CPU features;
once for each of its shared libraries) and when its runtime starts (a failed cuInit on machines
without a GPU, kernels without a oneDNN version), several of them before `TF_CPP_MIN_LOG_LEVEL`
is read, so the variable alone does not silence them. For a command, the process's standard
error (file descriptor 2, where C++ writes) is routed through a pipe: a thread writes back
everything but absl's log records. Fatal records, Python's own output (progress bars, warnings,
tracebacks) pass unchanged. `TF_CPP_MIN_LOG_LEVEL=0` (or 1) shows every record, as TensorFlow
would.
"""

import atexit
import logging
import os
import re
import sys
import threading

_LOG_RECORD = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+\] ")
_MAYBE_A_RECORD = re.compile(r"^[IWEF]\d{0,4}( |$)")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_SLOW_CALLBACK = "is slow compared to the batch time"


def quiet_tensorflow(native=True):
    """Keeps TensorFlow's native log records out of this process's standard error (see the
    module's docstring; `native=False` leaves file descriptor 2 alone), mutes tf-keras's
    per-batch callback timing warnings and transformers' informational logs. For the command
    line, not the library: it changes the whole process."""
    asked = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    if asked not in ("0", "1"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if native:
            _filter_native_stderr()
    import tensorflow  # noqa: F401  (imported here, behind the filter)
    import transformers

    logging.getLogger("tensorflow").addFilter(_drop_slow_callback_warnings)
    transformers.logging.set_verbosity_error()


class LogRecordFilter:
    """Drops absl's non-fatal log records from a stream of text (each with its continuation
    lines); `feed` returns what to pass on now, holding back only a line that may be a record."""

    def __init__(self):
        self._pending = ""
        self._dropping = False

    def feed(self, text):
        text = self._pending + text
        lines = text.split("\n")
        self._pending = lines.pop()  # the unfinished last line
        kept = [line + "\n" for line in lines if self._keep(line)]
        if self._pending and not _MAYBE_A_RECORD.match(self._pending):
            # A progress bar or a prompt (no newline yet): pass it on now, it is not a record.
            if self._keep(self._pending):
                kept.append(self._pending)
            self._pending = ""
        return "".join(kept)

    def flush(self):
        rest, self._pending = self._pending, ""
        return rest if rest and self._keep(rest) else ""

    def _keep(self, line):
        if line == _ABSL_PREAMBLE:
            return False
        record = _LOG_RECORD.match(line)
        if record:
            self._dropping = record.group(1) != "F"
        elif not line.startswith((" ", "\t")) and not _continues(line):
            self._dropping = False
        return not self._dropping


def _continues(line):
    # absl records that span lines (the CPU feature guard's) go on with a line of plain text;
    # the only ones TensorFlow writes begin like this.
    return line.startswith("To enable the following instructions")


def without_log_records(text):
    """`text` less absl's non-fatal log records."""
    stream = LogRecordFilter()
    return stream.feed(text) + stream.flush()


def _filter_native_stderr():
    """Routes file descriptor 2 through a pipe and a thread that drops log records."""
    if getattr(_filter_native_stderr, "installed", False):
        return
    _filter_native_stderr.installed = True
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    stream = LogRecordFilter()

    def forward():
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            _write_all(original, stream.feed(chunk.decode(errors="replace")))
        _write_all(original, stream.flush())

    thread = threading.Thread(target=forward, name="keras-sam-stderr", daemon=True)
    thread.start()

    def drain():
        # At exit: close our end of the pipe so the thread sees its end, and let it finish.
        sys.stderr.flush()
        os.dup2(original, 2)
        thread.join(timeout=2)

    atexit.register(drain)


def _write_all(descriptor, text):
    data = text.encode()
    while data:
        data = data[os.write(descriptor, data):]


def _drop_slow_callback_warnings(record):
    # tf-keras times every callback against a batch; the decoder's steps from cached embeddings
    # are short enough that the progress bar alone trips it, with no advice for the user.
    return _SLOW_CALLBACK not in record.getMessage()
