"""`python -m launcher k8s`: render a Volcano Job that runs the launcher on every Ascend server of a cluster.

Why: on Kubernetes, Volcano places one pod per server, Ascend's device plugin hands each pod its NPUs, and
HCCL-Controller or Ascend Operator writes the job's rank table into the pod. The pod then only has to run the
launcher with the same training flags as on one server; the launcher waits for the table, finds its own server
and starts that server's ranks. This module turns flags into that manifest (a pure plan rendered with jinja2)
and writes it; submitting it is `kubectl apply -f FILE`.
"""
import argparse
import json
import os
import re
import sys

import jinja2

from contract import atomic
from launcher.errors import LaunchError
from rank_table.validate import SCHEDULER_TABLE_PATHS

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
TEMPLATE = "volcano_job.yaml.j2"

# Where HCCL-Controller's ConfigMap (or Ascend Operator's file) appears inside every pod.
TABLE_PATH = SCHEDULER_TABLE_PATHS[0]     # where Ascend's operator mounts the job's rank table
TABLE_DIR = os.path.dirname(TABLE_PATH)
# NPUs per server a job may take: a 910A server 1, 2, 4 or 8 (CANN: 1·n, 2·n, 4·n or 8·n over n servers); the
# 910B family (Atlas A2 / A3) any count up to 8, or all 16 of a 16-NPU server (Huawei's 910b samples: 16).
LEGAL_DEVICES_PER_SERVER = {"910A": (1, 2, 4, 8), "910B": (1, 2, 3, 4, 5, 6, 7, 8, 16)}
MAX_DEVICES = 8
TASK_NAME = "worker"
CONTAINER_NAME = "launcher"
# Labels HCCL-Controller / Ascend Operator and the Ascend Volcano plugin look for, per chip (mindxdl-deploy
# samples/train/basic-training/ranktable/yaml/{910,910b}/a800_tensorflow_vcjob.yaml).
RING_LABEL = {"910A": "ascend-910", "910B": "ascend-910b"}
# Node label values of Ascend's nodeSelector `host-arch`; older Ascend Volcano plugins refuse pods without it.
HOST_ARCH = {"arm": "huawei-arm", "x86": "huawei-x86"}
# CANN's environment script in Huawei's images (utils.sh in the samples sources it before training).
DEFAULT_SET_ENV = "/usr/local/Ascend/ascend-toolkit/set_env.sh"
# `bash -c SCRIPT SET_ENV CMD...`: $0 is the script to source, "$@" the launcher's argv (no quoting needed).
# A missing script is one line naming the fix and exit 2, like every other mistake.
SHELL_PREFIX = ["/bin/bash", "-c",
                '[ -f "$0" ] || { echo "launcher: error: CANN environment script $0 not found in the image; '
                'render the job with --set-env PATH" >&2; exit 2; }; source "$0" && exec "$@"']
# Launcher flags the manifest sets itself: giving them again would contradict it.
RESERVED_FLAGS = ("--backend", "--rank-table", "--server-id", "--node-rank", "--job-id", "--nnodes",
                  "--master-addr", "--master-port", "--hosts", "--devices")
FIXED_VOLUMES = (
    # (name, kind, source, mount path)
    ("ascend-910-config", "configMap", None, TABLE_DIR),  # source: the job's ConfigMap
    ("ascend-driver", "hostPath", "/usr/local/Ascend/driver", "/usr/local/Ascend/driver"),
    ("ascend-add-ons", "hostPath", "/usr/local/Ascend/add-ons", "/usr/local/Ascend/add-ons"),
    ("npu-log", "hostPath", "/var/log/npu", "/var/log/npu"),
    ("localtime", "hostPath", "/etc/localtime", "/etc/localtime"),
)

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class K8sError(LaunchError):
    """A mistake in the flags; the message names the fix."""


def check_dns_label(value, what):
    """Kubernetes object names here must be DNS-1123 labels: lower case, digits, '-', at most 63."""
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise K8sError("%s %r is not a DNS-1123 label: use lower-case letters, digits and '-', start and end "
                       "with a letter or digit, at most 63 characters (e.g. mobilenetv3-8p)" % (what, value))


def check_devices_per_server(count, chip="910A"):
    legal = LEGAL_DEVICES_PER_SERVER[chip]
    if count not in legal:
        raise K8sError("--devices-per-server %d is not legal on an Ascend %s server: use one of %s"
                       % (count, chip, ", ".join(str(n) for n in legal)))


def image_arch(image):
    """"arm" or "x86" when the image reference names its architecture (…-aarch64, arm64, x86_64, amd64)."""
    text = image.lower()
    if re.search(r"(aarch64|arm64|[^a-z]arm[^a-z]|arm$)", text):
        return "arm"
    if re.search(r"(x86_64|x86|amd64)", text):
        return "x86"
    return None


def node_selector(args):
    """host-arch (from --arch, else the image's name, else huawei-arm: Atlas 800 training servers are ARM),
    accelerator-type for 910B (module-910b-8 / -16), then the user's --node-selector (which wins)."""
    arch = args.arch or image_arch(args.image) or "arm"
    selector = {"host-arch": HOST_ARCH[arch]}
    if args.chip == "910B":
        selector["accelerator-type"] = "module-910b-%d" % (16 if args.devices_per_server > 8 else 8)
    for key, value in (parse_key_value(text, "--node-selector") for text in args.node_selector):
        selector[key] = value
    return sorted(selector.items())


def check_printable(value, what):
    if not value.isprintable():
        raise K8sError("%s %r holds a control character: remove it" % (what, value))


def escape_k8s_refs(arg):
    """Kubernetes expands $(VAR) in container commands; '$$' keeps a user's '$' literal."""
    return arg.replace("$", "$$")


def passthrough_args(extra):
    """The launcher's own command line in each pod (training flags, `-- CMD`), checked: the manifest owns
    the multi-server flags."""
    for arg in extra:
        check_printable(arg, "argument")
        if arg == "--":
            break  # the rest is a custom worker command (`-- CMD`): not launcher flags
        flag = arg.split("=", 1)[0]
        if flag in RESERVED_FLAGS:
            raise K8sError("%s is set by the manifest on each pod; leave it out (servers: --servers, "
                           "devices: --devices-per-server, job id: --job-id before the training flags)"
                           % flag)
    return [escape_k8s_refs(arg) for arg in extra]


def check_launcher_args(args):
    """Catch now, not in a pod after scheduling, what the launcher would reject: its own parser reads the
    pod's arguments; a job needs a model (or a custom worker command) and the model must exist."""
    from launcher import cli

    try:
        options = cli.parse(args)
    except LaunchError as error:
        raise K8sError("the launcher in each pod would reject these flags: %s" % error) from None
    if options["command"]:
        return
    if not options.get("model"):
        raise K8sError("no --model: add the training flags (e.g. --model shufflenetv1 --data-path "
                       "/data/imagenet) or a worker command after '--'")
    from models import registry  # (imports TensorFlow: only when a model must be checked)
    names = list(registry.model_names())
    if options["model"] not in names:
        raise K8sError("unknown model %r: choose one of %s" % (options["model"], ", ".join(names)))


def parse_key_value(text, flag):
    key, sep, value = text.partition("=")
    if not sep or not LABEL_KEY.match(key) or len(value) > 63 or not LABEL_VALUE.match(value):
        raise K8sError("%s %r: write KEY=VALUE with Kubernetes label syntax (e.g. host-arch=huawei-arm)"
                       % (flag, text))
    return key, value


def parse_mount(text, flag, index, with_server):
    """`HOST_PATH:CONTAINER_PATH` (hostPath) or `SERVER:EXPORT:CONTAINER_PATH` (nfs) → a volume dict."""
    parts = text.split(":")
    want = 3 if with_server else 2
    example = "nfs.example.com:/export/data:/data" if with_server else "/data/imagenet:/data/imagenet"
    if len(parts) != want or not all(parts) or not all(p.startswith("/") for p in parts[-2:]):
        form = "SERVER:EXPORT:CONTAINER_PATH" if with_server else "HOST_PATH:CONTAINER_PATH"
        raise K8sError("%s %r: write %s with absolute paths (e.g. %s)" % (flag, text, form, example))
    for part in parts:
        check_printable(part, flag)
    volume = {"name": "%s-%d" % ("nfs" if with_server else "host", index), "kind": "nfs" if with_server
              else "hostPath", "source": parts[-2], "mount_path": parts[-1], "server": None}
    if with_server:
        volume["server"] = parts[0]
    return volume


def build_volumes(name, host_paths, nfs_mounts):
    """The rank-table ConfigMap, the NPU driver and log dirs, then the user's mounts; mount paths unique."""
    volumes = []
    for vol_name, kind, source, mount_path in FIXED_VOLUMES:
        volumes.append({"name": vol_name, "kind": kind, "source": source or "rings-config-" + name,
                        "mount_path": mount_path, "server": None})
    volumes += [parse_mount(text, "--host-path", i, False) for i, text in enumerate(host_paths)]
    volumes += [parse_mount(text, "--nfs", i, True) for i, text in enumerate(nfs_mounts)]
    seen = {}
    for volume in volumes:
        path = volume["mount_path"].rstrip("/") or "/"
        if path in seen:
            raise K8sError("mount path %s is used twice (%s and %s): give each mount its own container path"
                           % (path, seen[path], volume["name"]))
        seen[path] = volume["name"]
    return volumes


def launcher_args(python, job_id, training_args):
    """The launcher's argv in each pod: the scheduler's table; the launcher finds its own server from what
    the pod knows (POD_UID vs server_id, POD_IP vs container_ip, XDL_IP vs server_id/host_ip), so every
    generation of HCCL-Controller / Ascend Operator works without a flag."""
    return ([python, "-m", "launcher", "--backend", "npu", "--rank-table", TABLE_PATH, "--job-id", job_id]
            + list(training_args))


def launcher_command(python, job_id, training_args, set_env=DEFAULT_SET_ENV):
    """What each pod runs: bash sources CANN's set_env.sh, then execs the launcher (``launcher_args``)."""
    return SHELL_PREFIX + [set_env] + launcher_args(python, job_id, training_args)


def plan_manifest(args, extra):
    """Check the flags and return every value the template needs (pure: no files, no environment)."""
    check_dns_label(args.name, "job name")
    check_dns_label(args.namespace, "--namespace")
    check_dns_label(args.queue, "--queue")
    if args.servers < 1:
        raise K8sError("--servers %d: give the number of servers (pods), at least 1" % args.servers)
    # Volcano names pods <job>-<task>-<index> and uses that as the hostname: a DNS-1123 label too.
    longest_pod = "%s-%s-%d" % (args.name, TASK_NAME, args.servers - 1)
    if len(longest_pod) > 63:
        raise K8sError("job name %r is too long: pod names like %s must fit in 63 characters; shorten it to "
                       "%d characters" % (args.name, longest_pod, 63 - (len(longest_pod) - len(args.name))))
    check_devices_per_server(args.devices_per_server, args.chip)
    if not args.image or any(c.isspace() for c in args.image) or not args.image.isprintable():
        raise K8sError("--image %r: give a container image reference without spaces (e.g. "
                       "registry.example.com/ascend/train:1.0)" % args.image)
    job_id = args.job_id if args.job_id is not None else args.name
    if not JOB_ID_PATTERN.match(job_id):
        raise K8sError("--job-id %r: use letters, digits, '-' and '_' only" % job_id)
    if args.max_retry < 0:
        raise K8sError("--max-retry %d: give 0 or more" % args.max_retry)
    for value, flag in ((args.python, "--python"), (args.workdir or "", "--workdir"),
                        (args.set_env, "--set-env")):
        check_printable(value, flag)
    if not args.set_env.startswith("/"):
        raise K8sError("--set-env %r: give the absolute path of CANN's set_env.sh inside the image "
                       "(default %s)" % (args.set_env, DEFAULT_SET_ENV))
    if args.workdir and not args.workdir.startswith("/"):
        raise K8sError("--workdir %r: give an absolute path inside the image" % args.workdir)
    selector = node_selector(args)
    volumes = build_volumes(args.name, args.host_path, args.nfs)
    training = passthrough_args(extra)
    check_launcher_args(launcher_args(args.python, job_id, training)[3:])
    command = launcher_command(args.python, job_id, training, args.set_env)
    return {
        "name": args.name,
        "namespace": args.namespace,
        "configmap": "rings-config-" + args.name,
        "queue": args.queue,
        "servers": args.servers,
        "devices_per_server": args.devices_per_server,
        "max_retry": args.max_retry,
        "task": TASK_NAME,
        "container": CONTAINER_NAME,
        "image": args.image,
        "pull_policy": args.pull_policy,
        "workdir": args.workdir,
        "table_dir": TABLE_DIR,
        "node_selector": selector,
        "ring_label": RING_LABEL[args.chip],
        "volumes": volumes,
        "command": command,
    }


def yaml_quote(value):
    """A double-quoted YAML scalar; JSON string escapes are valid YAML ones."""
    return json.dumps(str(value), ensure_ascii=False)


def render(plan):
    """The manifest text for a plan from plan_manifest."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=True)
    env.filters["q"] = yaml_quote
    return env.get_template(TEMPLATE).render(**plan)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one K8sError line instead of usage text."""

    def error(self, message):
        raise K8sError("%s (see: python -m launcher k8s --help)" % message)


def build_parser():
    parser = _Parser(
        prog="python -m launcher k8s", allow_abbrev=False,
        description="Render a Volcano Job that runs the launcher on every Ascend server (one pod per "
                    "server). Options this command does not know are the launcher's (training flags; may "
                    "follow a '--'); '-- CMD ...' is a custom worker command as on the launcher. "
                    "Submit: kubectl apply -f FILE.")
    parser.add_argument("--name", required=True, help="job name (DNS-1123 label); also the default job id")
    parser.add_argument("--image", required=True, help="container image holding this project and CANN")
    parser.add_argument("--namespace", default="default", help="Kubernetes namespace (default: default)")
    parser.add_argument("--servers", type=int, default=1,
                        help="number of servers = pods = replicas (default 1)")
    parser.add_argument("--devices-per-server", type=int, default=MAX_DEVICES,
                        help="NPUs per server: 1, 2, 4 or 8 on 910A; 1-8 or 16 on 910B (default 8)")
    parser.add_argument("--chip", choices=sorted(RING_LABEL), default="910A",
                        help="NPU generation of the nodes: sets the ring-controller.atlas label (ascend-910 "
                             "/ ascend-910b) and, for 910B, the accelerator-type node selector (910A)")
    parser.add_argument("--arch", choices=sorted(HOST_ARCH),
                        help="node CPU architecture for the host-arch node selector (default: from the image "
                             "name, e.g. ...-aarch64 / ...-x86_64, else arm)")
    parser.add_argument("--set-env", default=DEFAULT_SET_ENV, metavar="PATH",
                        help="CANN's set_env.sh inside the image, sourced before the launcher (default %s)"
                             % DEFAULT_SET_ENV)
    parser.add_argument("--job-id", default=None, help="JOB_ID shared by every rank (default: the job name)")
    parser.add_argument("--queue", default="default", help="Volcano queue (default: default)")
    parser.add_argument("--max-retry", type=int, default=3,
                        help="whole-job restarts Volcano may do (default 3)")
    parser.add_argument("--python", default="python3", help="Python inside the image (default python3)")
    parser.add_argument("--workdir", default=None, help="working directory in the image (the project root)")
    parser.add_argument("--pull-policy", default="IfNotPresent", choices=("IfNotPresent", "Always", "Never"))
    parser.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE",
                        help="node label the pods need, e.g. host-arch=huawei-arm (repeatable)")
    parser.add_argument("--host-path", action="append", default=[], metavar="HOST:CONTAINER",
                        help="mount a node directory, e.g. /data/imagenet:/data/imagenet (repeatable)")
    parser.add_argument("--nfs", action="append", default=[], metavar="SERVER:EXPORT:CONTAINER",
                        help="mount an NFS export, e.g. nfs1:/export/out:/job/output (repeatable)")
    parser.add_argument("-o", "--output", default="-", help="manifest file to write (default: stdout)")
    return parser


def write_manifest(text, path):
    """Write to stdout or a file; an existing file is replaced only as a whole (never half-written)."""
    if path == "-":
        sys.stdout.write(text)
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise K8sError("-o %s: directory %s does not exist; create it or choose another path"
                       % (path, directory))
    try:
        atomic.write_text(path, text)
    except OSError as exc:
        raise K8sError("-o %s: cannot write (%s); choose a writable path"
                       % (path, exc.strerror or exc)) from None


def split_extra(argv):
    """(this command's part, the launcher's part). After `--`, flags are the launcher's (the `--` only
    separates); a word is a custom worker command, kept as `-- CMD` just as the launcher reads it."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    rest = argv[cut + 1:]
    if rest and rest[0].startswith("-"):
        return argv[:cut], rest
    return argv[:cut], argv[cut:]


def main(argv=None):
    """Entry point of `python -m launcher k8s ...`; returns the exit code (2 for a user mistake)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    own, extra = split_extra(argv)
    try:
        args, unknown = build_parser().parse_known_args(own)
        plan = plan_manifest(args, unknown + extra)
        write_manifest(render(plan), args.output)
    except K8sError as exc:
        sys.stderr.write("launcher k8s: error: %s\n" % exc)
        return 2
    if args.output != "-":
        sys.stderr.write("launcher k8s: wrote %s (%d server(s) x %d NPU(s)); submit it with: "
                         "kubectl apply -f %s\n"
                         % (args.output, args.servers, args.devices_per_server, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
