"""Tasks for a folder of notebooks: `invoke --list` shows them, `invoke up` starts Jupyter."""

from nbdock.tasks import ns  # noqa: F401
