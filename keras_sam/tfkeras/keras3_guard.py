"""Guards against the two Keras packages being mixed: TFSamModel lives in tf-keras (Keras 2)."""


def is_keras3_object(obj):
    """True for an object made by Keras 3's `keras` package rather than `tf_keras`."""
    return type(obj).__module__.split(".")[0] == "keras"


def reject_keras3(where, **objects):
    """Raises TypeError naming the first Keras 3 object among `objects` (lists are looked into)."""
    for name, value in objects.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if is_keras3_object(item):
                raise TypeError(
                    f"{where}: {name} got a Keras 3 object ({type(item).__module__}."
                    f"{type(item).__name__}). SamSegmenter is a tf-keras (Keras 2) model, like "
                    "TFSamModel: build it with `import tf_keras as keras` (or tf.keras once "
                    "transformers is imported) instead of `import keras`."
                )
