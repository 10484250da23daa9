"""Which metrics get mask logits and which probabilities, for both model families.

The segmenters output logits. Keras's threshold metrics expect probabilities, so every compiled
metric is wrapped to receive the sigmoid of the logits, except those made with
`from_logits=True` (keras-sam's DiceScore and IoUScore among them). The functions take the Keras
module of the family calling them (`tf_keras` or `keras`), so this module imports neither.
"""

# Names Keras resolves by the targets' shape: for binary masks, the binary metrics.
BINARY_NAMES = {"accuracy": "BinaryAccuracy", "acc": "BinaryAccuracy",
                "crossentropy": "BinaryCrossentropy", "ce": "BinaryCrossentropy"}


def metric_object(metric, keras):
    """A metric object from an object, a name or a metric function."""
    if isinstance(metric, keras.metrics.Metric):
        return metric
    if isinstance(metric, str) and metric in BINARY_NAMES:
        return getattr(keras.metrics, BINARY_NAMES[metric])(name=metric)
    found = keras.metrics.get(metric)
    if isinstance(found, keras.metrics.Metric):
        return found
    name = metric if isinstance(metric, str) else getattr(found, "__name__", "metric")
    return keras.metrics.MeanMetricWrapper(found, name=name)


def on_masks(metrics, keras, wrapper):
    """`metrics` (a list, nested per output in a saved training config) with every one that does
    not take logits wrapped in `wrapper` (the family's OnProbabilities)."""
    if metrics is None:
        return None
    return [metric if _takes_logits(metric, keras, wrapper) else wrapper(metric) for metric in _flat(metrics)]


def _flat(items):
    if not isinstance(items, (list, tuple)):
        return [items]
    return [leaf for item in items for leaf in _flat(item)]


def _takes_logits(metric, keras, wrapper):
    if isinstance(metric, wrapper):
        return True  # already wrapped (compiled again, or loaded)
    if not isinstance(metric, keras.metrics.Metric):
        return False
    return bool(getattr(metric, "from_logits", False) or metric.get_config().get("from_logits", False))
