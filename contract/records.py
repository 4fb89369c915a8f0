"""Typed records (typing.NamedTuple) to plain JSON values, by one function.

Why: the plan, rank specs, failures and summaries are NamedTuples in the code (attribute access, a typo is an
AttributeError, not a silent None) but JSON on disk (launch.json, failure.json) with the same keys as always.
"""


def to_json(value):
    """NamedTuples -> dicts (their field names as keys), recursively through lists, tuples and dicts."""
    if hasattr(value, "_asdict"):
        return {key: to_json(item) for key, item in value._asdict().items()}
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value
