"""Training: data loading (fashion_mnist.py, data.py), arguments (args.py) and the Accelerate loop (loop.py).

Nothing is imported here so that `import annotated_pipeline.training.fashion_mnist` stays cheap;
import the submodule you need.
"""
