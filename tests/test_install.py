"""`pip install .` gives console commands that work from any directory (templates are package data).

The project is copied to a temporary directory first (setuptools writes build/ beside the sources) and
installed with `pip install --no-deps --no-build-isolation --target DIR`; the commands then run from another
directory with only DIR on PYTHONPATH, so nothing can come from the repository root.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

SKIP = shutil.ignore_patterns(".venv", ".git", "output", "build", "*.egg-info", "__pycache__", "tests",
                              "bench", "demo_data", ".pytest_cache", ".ruff_cache")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    source = str(base / "src")
    shutil.copytree(ROOT, source, ignore=SKIP, symlinks=True)
    target = str(base / "site")
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
               "--target", target, source]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode == 0, result.stdout
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=target)
    return {"bin": os.path.join(target, "bin"), "site": target, "cwd": str(elsewhere), "env": env}


def run(installed, name, *args):
    return subprocess.run([os.path.join(installed["bin"], name)] + list(args), cwd=installed["cwd"],
                          env=installed["env"], capture_output=True, text=True, timeout=300)


def test_the_launcher_command_plans_a_job_from_another_directory(installed):
    result = run(installed, "ascend-launch", "--devices", "2", "--model", "mobilenetv3_small",
                 "--data-path", "synthetic", "--dry-run", "--output-dir", "job")
    assert result.returncode == 0, result.stderr
    plan = json.load(open(os.path.join(installed["cwd"], "job", "launch.json")))
    assert plan["ranks"][0]["argv"][1:3] == ["-m", "train"]
    script = open(plan["ranks"][0]["run_script"]).read()       # rendered from the packaged template
    assert "RANK_ID=0" in script
    launcher_file = subprocess.run([sys.executable, "-c", "import launcher; print(launcher.__file__)"],
                                   cwd=installed["cwd"], env=installed["env"], stdout=subprocess.PIPE,
                                   text=True).stdout
    assert launcher_file.startswith(installed["site"])


def test_the_kubernetes_manifest_template_is_packaged_too(installed):
    result = run(installed, "ascend-launch", "k8s", "--help")
    assert result.returncode == 0, result.stderr


def test_the_rank_table_command_builds_a_table_from_another_directory(installed):
    conf = os.path.join(installed["cwd"], "hccn.conf")
    with open(conf, "w") as handle:
        handle.write("".join("address_%d=192.168.100.%d\n" % (d, 101 + d) for d in range(8)))
    result = run(installed, "ascend-rank-table", "--devices", "0-3", "--server-ip", "10.0.0.1",
                 "--hccn-conf", conf, "--no-hccn-tool", "--chip", "910B", "-o", "table.json")
    assert result.returncode == 0, result.stderr
    table = json.load(open(os.path.join(installed["cwd"], "table.json")))
    assert [d["device_ip"] for d in table["server_list"][0]["device"]] == \
        ["192.168.100.101", "192.168.100.102", "192.168.100.103", "192.168.100.104"]


def test_the_trainer_command_checks_its_flags_from_another_directory(installed):
    result = run(installed, "ascend-train", "--model", "mobilenetv3_small", "--batch-size", "0")
    assert result.returncode == 2
    assert "--batch-size must be positive" in result.stderr


def test_every_package_of_the_project_is_installed():
    """A new top-level package (as contract/ was) must be in pyproject's list, or the commands break."""
    packages = sorted(name for name in os.listdir(ROOT) if name not in ("tests", "tools", "bench")
                      and os.path.isfile(os.path.join(ROOT, name, "__init__.py")))
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    listed = text.split("[tool.setuptools.packages.find]", 1)[1].split("\n\n", 1)[0]
    assert [name for name in packages if '"%s*"' % name not in listed] == []
