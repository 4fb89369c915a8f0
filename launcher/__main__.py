"""`python -m launcher ...` runs a job (launcher.cli); `python -m launcher k8s ...` writes the Kubernetes
manifests (launcher.k8s). The subcommand is routed here so that k8s may use cli's parser without cli
knowing about k8s (no import cycle)."""
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "k8s":
        from launcher import k8s
        return k8s.main(argv[1:])
    from launcher import cli
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
