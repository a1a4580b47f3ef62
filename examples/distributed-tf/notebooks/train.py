"""Multi-worker TensorFlow training with a custom loop: the smallest complete example.

Trains a small Keras 3 regression model on synthetic data with
tf.distribute.MultiWorkerMirroredStrategy. Each worker reads its cluster and its own place in it
from the TF_CONFIG environment variable; without TF_CONFIG it runs as a single worker. Every
worker ends with the same weights, and prints:

    loss first=<float> last=<float>
    weights sha256=<hex>

The chief (worker 0, or the only worker) also writes result.json into $NBDOCK_OUTPUT (or the
current directory).

Run it alone:           python train.py [--steps 30] [--batch-size 64] [--seed 0]
Run it under nbdock:    nbdock train --workers 2 --script train.py
The environment variables STEPS, BATCH_SIZE and SEED, when set, replace the defaults.

The loop is written by hand because Keras 3's model.fit does not work under
MultiWorkerMirroredStrategy (see README.md).
"""
import argparse
import hashlib
import json
import os

import keras
import numpy as np
import tensorflow as tf


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=int(os.environ.get("STEPS", 30)))
    parser.add_argument("--batch-size", type=int, default=int(os.environ.get("BATCH_SIZE", 64)),
                        help="global batch size, split evenly across the workers")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 0)))
    args = parser.parse_args()

    # The strategy must exist before any other TensorFlow op runs. It reads TF_CONFIG and blocks
    # until every worker in the cluster has started.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    workers = strategy.num_replicas_in_sync
    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow

    # Synthetic data, identical on every worker: y = tanh(x . w) + noise.
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(2048, 8)).astype("float32")
    y = (np.tanh(x @ rng.normal(size=(8, 1))) + 0.05 * rng.normal(size=(2048, 1))).astype("float32")

    def dataset_fn(context):
        # Each worker reads its own shard and a slice of the global batch.
        batch = context.get_per_replica_batch_size(args.batch_size)
        data = tf.data.Dataset.from_tensor_slices((x, y))
        return data.shard(context.num_input_pipelines, context.input_pipeline_id).repeat().batch(batch)

    batches = iter(strategy.distribute_datasets_from_function(dataset_fn))

    with strategy.scope():
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(1)])
        optimizer = keras.optimizers.Adam(learning_rate=0.01)
        optimizer.build(model.trainable_variables)

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            per_example = keras.losses.mean_squared_error(yb, model(xb, training=True))
            # Divide by the global batch: the optimizer sums the gradients of all workers.
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=args.batch_size)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(batch):
        losses = strategy.run(replica_step, args=batch)
        return strategy.reduce("SUM", losses, axis=None)

    history = [float(train_step(next(batches))) for _ in range(args.steps)]
    weights = b"".join(np.asarray(v.numpy(), dtype=np.float32).tobytes()
                       for v in model.trainable_variables)
    digest = hashlib.sha256(weights).hexdigest()
    print(f"loss first={history[0]:.6f} last={history[-1]:.6f}")
    print(f"weights sha256={digest}")

    resolver = strategy.cluster_resolver
    if resolver.task_type in (None, "chief") or (resolver.task_type == "worker"
                                                  and resolver.task_id == 0):
        output = os.environ.get("NBDOCK_OUTPUT") or "."
        os.makedirs(output, exist_ok=True)
        result = {"workers": workers, "steps": args.steps, "batch_size": args.batch_size,
                  "seed": args.seed, "loss": history, "weights_sha256": digest}
        with open(os.path.join(output, "result.json"), "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
