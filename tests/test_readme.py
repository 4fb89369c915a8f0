"""The README stays true: the quick start is the Makefile's two commands, the demo's promise and command are
the code's, and every flag of every command-line tool is in the README."""
import os
import re
import subprocess
import sys

from helpers import ROOT

from launcher import cli, demo, k8s

LONG_OPTION = re.compile(r"--[a-z][a-z0-9_-]*")


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
        return handle.read()


README = read("README.md")


def section(title):
    start = README.index("\n## %s\n" % title)
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def code_blocks(text):
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def commands(block):
    """Shell commands of a code block: comments dropped, continuation lines joined."""
    joined = block.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            found.append(" ".join(line.split()))
    return found


def makefile_targets():
    targets = {}
    current = None
    for line in read("Makefile").splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_.-]*):(?!=)", line)
        if match:
            current = match.group(1)
            targets[current] = []
        elif line.startswith("\t") and current:
            targets[current].append(line.strip())
    return targets


def test_quick_start_is_exactly_the_two_make_commands_and_the_makefile_has_them():
    first_block = code_blocks(section("Quick start"))[0]
    assert commands(first_block) == ["make demo", "make test"]
    targets = makefile_targets()
    assert "demo" in targets and "test" in targets
    assert any("-m launcher.demo" in line for line in targets["demo"])
    assert "$(DEMO_ARGS)" in " ".join(targets["demo"])          # the README's DEMO_ARGS example works


def test_the_demo_command_and_promise_are_the_codes():
    quick = section("Quick start")
    expected = "python -m launcher " + " ".join(
        demo.launcher_args(dict(demo.DEFAULTS), "output/demo/<time>"))
    shown = [c for block in code_blocks(quick) for c in commands(block) if c.startswith("python -m launcher")]
    assert shown == [expected]
    assert "**at least %.2f**" % demo.EXPECTED_TOP1 in quick
    measured = re.findall(r"^\| \d+ \| ([0-9.]+) \| ", quick, re.M)     # the measured runs' top-1
    assert measured and all(float(top1) >= demo.EXPECTED_TOP1 for top1 in measured)


def test_the_demo_flag_table_shows_the_codes_defaults():
    table = section("Command-line reference").split("### Demo:", 1)[1]
    for action in demo.build_parser()._actions:
        if action.option_strings and action.default not in (None, "==SUPPRESS=="):
            start = "| `%s " % action.option_strings[0]
            (row,) = [line for line in table.splitlines() if line.startswith(start)]
            assert "`%s`" % action.default in row or "| %s |" % action.default in row, row


def test_every_modelzoo_script_is_documented_and_exists():
    scripts = sorted(name for name in os.listdir(os.path.join(ROOT, "test")) if name.startswith("train_"))
    assert scripts == ["train_full_1p.sh", "train_full_8p.sh", "train_performance_1p.sh",
                       "train_performance_8p.sh"]
    for name in scripts:
        assert "test/%s" % name in README
    for mentioned in set(re.findall(r"test/(train_[a-z_0-9]+\.sh)", README)):
        assert mentioned in scripts


def parser_options(parser):
    """The first long option of every argument (aliases such as ModelZoo spellings may stay undocumented)."""
    found = []
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--") and s != "--help"]
        if longs:
            found.append(longs[0])
    return found


def help_options(*module_args):
    result = subprocess.run([sys.executable, "-m"] + list(module_args) + ["--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(LONG_OPTION.findall(result.stdout)) - {"--help"}


def undocumented(options):
    return sorted(option for option in set(options) if not re.search(re.escape(option) + r"(?![a-z0-9_-])",
                                                                     README))


def test_every_launcher_trainer_and_demo_flag_is_in_the_readme():
    from train.config import build_parser as train_parser
    missing = {
        "launcher": undocumented(parser_options(cli.build_parser())),
        "launcher k8s": undocumented(parser_options(k8s.build_parser())),
        "train": undocumented(parser_options(train_parser())),
        "launcher.demo": undocumented(parser_options(demo.build_parser())),
    }
    assert missing == {key: [] for key in missing}


def test_every_tool_flag_and_script_flag_is_in_the_readme():
    usage = subprocess.run(["bash", os.path.join(ROOT, "test", "train_full_8p.sh"), "--help"],
                           capture_output=True, text=True, timeout=60).stdout
    missing = {
        "test/*.sh": undocumented(LONG_OPTION.findall(usage)),
        "rank_table": undocumented(help_options("rank_table")),
        "rank_table validate": undocumented(help_options("rank_table", "validate")),
        "rank_table merge": undocumented(help_options("rank_table", "merge")),
        "data.convert": undocumented(help_options("data.convert")),
        "data.digits": undocumented(help_options("data.digits")),
        "data.faces": undocumented(help_options("data.faces")),
        "train.predict": undocumented(help_options("train.predict")),
        "data": undocumented(help_options("data")),
    }
    assert missing == {key: [] for key in missing}


def test_linked_docs_exist():
    for target in re.findall(r"\]\(((?:docs|bench)/[^)#]+)", README):
        assert os.path.exists(os.path.join(ROOT, target)), target


# Flags of other tools the docs show beside ours (pip, venv, TensorBoard, torchrun, Ascend's ATC, docker;
# pytest's and pytest-xdist's come from `pytest --help` below), a ModelZoo flag shown being refused
# (--autotune), and words about flags in general.
FOREIGN_FLAGS = {"--no-deps", "--system-site-packages", "--logdir", "--nproc_per_node", "--framework",
                 "--input_shape", "--soc_version", "--autotune", "--shm-size", "--dash-option",
                 "--dash_option", "--flag"}


def every_known_flag():
    """Every long option (both spellings) of every command this project has."""
    from rank_table import cli as rank_table_cli
    from train.config import build_parser as train_parser
    parsers = [cli.build_parser(), k8s.build_parser(), train_parser(), demo.build_parser()]
    parsers += list(rank_table_cli._parsers().values())
    known = set()
    for parser in parsers:
        known |= set(name for name in parser._option_string_actions if name.startswith("--"))
    for module in ("data", "data.convert", "data.digits", "data.faces", "train.predict"):
        known |= help_options(module)
    usage = subprocess.run(["bash", os.path.join(ROOT, "test", "train_full_8p.sh"), "--help"],
                           capture_output=True, text=True, timeout=60).stdout
    # pytest's, pytest-xdist's and the suite's own options (tests/conftest.py: --cpu-kernels)
    suite = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60).stdout
    return known | set(LONG_OPTION.findall(usage)) | set(LONG_OPTION.findall(suite))


def test_every_flag_the_readme_and_docs_name_exists():
    known = every_known_flag() | FOREIGN_FLAGS
    for name in ["README.md"] + ["docs/" + doc for doc in sorted(os.listdir(os.path.join(ROOT, "docs")))]:
        text = re.sub(r"\]\([^)]*\)", "]", read(name))              # link targets are not flags
        unknown = sorted(flag for flag in set(LONG_OPTION.findall(text)) - known     # a family: --data_dump_*
                         if not (flag[-1] in "_-" and any(k.startswith(flag) for k in known)))
        assert unknown == [], name


def row(table_text, flag):
    rows = [line for line in table_text.splitlines() if line.startswith("| `%s" % flag)
            and re.match(r"\| `%s[ `]" % re.escape(flag), line)]
    assert len(rows) == 1, flag
    return rows[0]


def same_value(text, default):
    text = text.strip().strip("`").lstrip("./")
    if text == str(default):
        return True
    try:
        return float(text) == float(default)
    except (TypeError, ValueError):
        return False


def test_the_launcher_tables_defaults_are_the_codes():
    from launcher import ascend, plan, rendezvous
    table = section("Command-line reference").split("### Launcher:", 1)[1].split("\n### ", 1)[0]
    constants = {"--stall-timeout": plan.TRAINER_STALL_TIMEOUT, "--table-wait": ascend.DEFAULT_TABLE_WAIT,
                 "--rendezvous-timeout": rendezvous.DEFAULT_TIMEOUT,
                 "--collective-timeout": plan.DEFAULT_COLLECTIVE_TIMEOUT,
                 "--master-port": rendezvous.DEFAULT_PORT}
    for action in cli.build_parser()._actions:
        flag = next((s for s in action.option_strings if s.startswith("--")), None)
        if flag in (None, "--help") or action.default is False:
            continue
        default = constants.get(flag, action.default)
        if default is None:
            continue
        said = re.findall(r"default `?([^`);,]+)`?", row(table, flag))
        assert said and same_value(said[0], default), (flag, said, default)


def test_the_trainer_tables_defaults_are_the_codes():
    from train.config import build_parser as train_parser
    table = section("Command-line reference").split("### Trainer:", 1)[1].split("\n### ", 1)[0]
    for action in train_parser()._actions:
        flag = next((s for s in action.option_strings if s.startswith("--")), None)
        if flag in (None, "--help") or action.default in (None, False, True, [], "") or \
                action.dest == "output_dir":
            continue
        column = row(table, flag).split(" | ")[1]
        words = [word.strip("`()") for word in column.split()]
        assert any(same_value(word, action.default) for word in words), (flag, column, action.default)


def test_the_docs_give_one_collective_timeout_default_the_codes():
    from contract.worker_env import default
    said = []
    for name in ["README.md"] + ["docs/" + doc for doc in sorted(os.listdir(os.path.join(ROOT, "docs")))]:
        text = read(name)
        said += re.findall(r"(?:collective-timeout|COLLECTIVE_TIMEOUT|collective_timeout)[^\n]{0,60}?"
                           r"default[ =]*(\d+)", text)
        said += re.findall(r"(\d+) s is the default", text)
    assert said and set(float(value) for value in said) == {default("collective_timeout")}, said
