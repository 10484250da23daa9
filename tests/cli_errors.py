"""What the command-line tests check of a bad input: one `keras-sam: error:` line, exit status 2."""

import pytest

from keras_sam.app.cli import main


def error_of(argv, capsys):
    """Runs `keras-sam argv`, expecting a one-line error; returns that line."""
    with pytest.raises(SystemExit) as raised:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert raised.value.code == 2
    # Progress bars may come first; the error itself is one line, the last, and no traceback.
    assert "Traceback" not in err and err.count("keras-sam: error:") == 1, err
    last = err.splitlines()[-1]
    assert last.startswith("keras-sam: error:"), err
    return last
