"""Distributed TensorFlow: N workers of the project's image, each with its TF_CONFIG.

`model` says what a run is (what to train, TF_CONFIG, the run folder, the outcomes, the
`Backend` interface); `run` follows the workers on any backend; `local`, `swarm` and
`k8s` are the backends, chosen by name in `run.BACKENDS`.
"""
