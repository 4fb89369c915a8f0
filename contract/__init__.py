"""The seams between the project's parts, free of TensorFlow so that the launcher, the rank-table tools and
the trainer can all import them: the launcher -> worker environment (worker_env), the one atomic file
writer (atomic) and the rule for JSON records (records)."""
