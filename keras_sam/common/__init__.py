"""What both model families share and no Keras is needed for: geometry, prompts, pre- and
post-processing, the training objective and the loss and score arithmetic (written once over a
NumPy-like `ops` namespace that each family supplies), surface metrics, evaluation, drawing,
storage, SAM configs and processors, the model interface, model files and the checkpoint hub.

No module here imports tf_keras or keras. Some use TensorFlow itself where their work is
TensorFlow's (tf.data, image resizing, the CPU allocator); the Keras 3 family imports none of those.
"""
