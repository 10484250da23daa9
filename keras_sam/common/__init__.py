"""Code shared by both model families: no Keras here (NumPy, SciPy, or a family's ops passed in)."""
