"""Rules every command-line parser of the project follows (argparse; no TensorFlow).

Why: the launcher passes the trainer's options through and checks them with the trainer's own parser, and
ModelZoo users spell options with underscores (`--batch_size`). So each option is defined once (with its dash
spelling; the underscore spelling is accepted alike), and an option given twice with different values
(`--batch-size 32 --batch_size 64`) is a mistake named in one line instead of "the last one wins".
"""


def accept_underscores(parser):
    """Every `--a-b` option of ``parser`` also answers to `--a_b` (and the reverse); help shows one name."""
    for name, action in list(parser._option_string_actions.items()):
        if not name.startswith("--"):
            continue
        for other in ("--" + name[2:].replace("-", "_"), "--" + name[2:].replace("_", "-")):
            if other != name:
                parser._option_string_actions.setdefault(other, action)
    return parser


def _takes_value(action):
    return action.nargs != 0


def given(parser, argv):
    """[(dest, spelling, value)] for every option of ``parser`` in ``argv``, in order (stops at `--`).

    Tokens that are not ``parser``'s options are skipped; a flag without a value (store_true) has its
    constant as value. Only exact spellings count (the project's parsers take no abbreviations).
    """
    found = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == "--":
            break
        if not token.startswith("--"):
            continue
        name, eq, value = token.partition("=")
        action = parser._option_string_actions.get(name)
        if action is None:
            continue
        if not _takes_value(action):
            found.append((action.dest, name, action.const))
            continue
        if not eq:
            optional = action.nargs == "?"
            if index >= len(tokens) or (optional and tokens[index].startswith("-")):
                if optional:
                    found.append((action.dest, name, action.const))
                continue
            value = tokens[index]
            index += 1
        found.append((action.dest, name, value))
    return found


def conflict(parser, argv):
    """One line naming two spellings of one option given with different values, or None.

    Options that collect every value (action="append", such as --model-option) may repeat.
    """
    appends = set(a.dest for a in parser._actions if type(a).__name__ in ("_AppendAction", "_CountAction"))
    seen = {}
    for dest, name, value in given(parser, argv):
        if dest in appends:
            continue
        if dest in seen and _meaning(parser, name, seen[dest][1]) != _meaning(parser, name, value):
            first_name, first_value = seen[dest]
            return "%s and %s set the same option with different values; give it once" % (
                _shown(parser, first_name, first_value), _shown(parser, name, value))
        seen.setdefault(dest, (name, value))
    return None


def _meaning(parser, name, value):
    """A value as the option reads it (`30` and `30.0` are one number); the text when it does not parse."""
    convert = parser._option_string_actions[name].type
    if callable(convert) and isinstance(value, str):
        try:
            return convert(value)
        except (TypeError, ValueError):
            return value
    return value


def _shown(parser, name, value):
    action = parser._option_string_actions[name]
    return name if not _takes_value(action) else "%s %s" % (name, value)


def dests_given(parser, argv):
    """The set of destinations the user gave explicitly (to tell a default from a choice)."""
    return set(dest for dest, _, _ in given(parser, argv))
