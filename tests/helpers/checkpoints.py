"""Reading what a run left in its checkpoint directory, as the tests that compare it with the ranks' own
end records need it."""


def checkpoint_values(prefix):
    """{variable name: value} of the checkpoint at `prefix`."""
    from tfcompat import tf
    reader = tf.compat.v1.train.NewCheckpointReader(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def latest(directory):
    """The prefix of the newest checkpoint in `directory` (None if there is none)."""
    from tfcompat import tf
    return tf.compat.v1.train.latest_checkpoint(str(directory))


def model_checksum(values):
    """The trainer's weights_checksum over a checkpoint's model variables (no Momentum slots, no step
    counter), in name order: what each rank's `end` record holds."""
    from train.trainer import weights_checksum
    return weights_checksum([value for name, value in sorted(values.items())
                             if not name.endswith("/Momentum") and "global_step" not in name])
