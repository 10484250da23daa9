"""The names of the exported functions, importable without TensorFlow."""

SIGNATURES = ("segment", "embed", "decode", "decode_points")
