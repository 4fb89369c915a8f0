"""The data package's error for user mistakes (missing folders, empty classes, bad files).

Why: every entry point turns a DataError into one line on stderr and exit code 2; anything else is a bug.
"""

# What to do with an unreadable image (data.robust applies it; the trainer's --bad-images offers it). Here,
# free of TensorFlow, so that train.config and the launcher's check read the one definition.
BAD_IMAGE_POLICIES = ("skip", "stop")
# Training augmentation (data.augment applies it; the trainer's --augment offers it), for the same reason.
AUGMENT_MODES = ("imagenet", "light", "none")


class DataError(ValueError):
    """A mistake in the user's dataset or flags; the message is one line that names the fix."""
