"""The Keras 3 family's tests (a package, so that its conftest and test modules do not shadow the
suite's own: conftest.py explains how they run)."""
