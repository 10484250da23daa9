"""The first import of the scripts here that compare one device with two: TensorFlow splits the
CPU into logical devices only before it first uses it, so this runs before anything else imports
TensorFlow's devices (each script runs in a process of its own; its folder is first on sys.path)."""

import tensorflow as tf


def split_the_cpu_in_two():
    """Two logical CPU devices, for tf.distribute.MirroredStrategy over 2 replicas."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
