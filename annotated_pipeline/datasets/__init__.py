"""Image sets, read the same way by training, evaluation, the figures and the demo.

    fashion_mnist.py  the Fashion-MNIST IDX files (SHA-256 checked), class names, parquet export
    loading.py        training images from a Hub data set, parquet files, an image folder or IDX files; transforms
    labelled.py       a labelled image set as tensors in [-1, 1], and its splits (evaluation's reference)
    shapes.py         a small labelled set of drawn shapes (CC0), written as an image folder

Nothing is imported here: `import annotated_pipeline.datasets.fashion_mnist` stays cheap.
"""
