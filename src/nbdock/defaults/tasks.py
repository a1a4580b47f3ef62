"""Tasks for a folder of notebooks: `invoke --list` shows them, `invoke up` starts Jupyter."""

try:
    from nbdock.tasks import ns
except ModuleNotFoundError as missing:  # this file was copied to where nbdock is not installed
    if missing.name != "nbdock":
        raise
    import sys

    from invoke.collection import Collection
    from invoke.context import Context
    from invoke.tasks import task

    HOW = f"`{sys.executable} -m pip install /path/to/nbdock` (a checkout or a wheel)"
    print(f"nbdock: nbdock is not installed in this Python ({sys.executable}); install it with {HOW}, then run "
          "invoke again", file=sys.stderr)
    if not {"-l", "--list", "--complete"} & set(sys.argv[1:]):
        sys.exit(1)

    @task
    def install_nbdock(c: Context) -> None:
        """nbdock is not installed in this Python: its tasks appear once it is."""
        print(f"install nbdock with {HOW}")

    ns = Collection(install_nbdock)
