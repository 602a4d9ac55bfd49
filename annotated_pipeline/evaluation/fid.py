"""`annotated-pipeline fid A B`: the Inception FID (and KID) of two image folders or saved statistics.

    annotated-pipeline fid real/ samples/                  # FID, as `python -m pytorch_fid A B`
    annotated-pipeline fid real/ samples/ --kid            # and the unbiased KID (Binkowski et al. 2018)
    annotated-pipeline fid real/ --save-stats real.npz     # a folder's statistics, once
    annotated-pipeline fid real.npz samples/               # ... and compared later

Each of A and B is a folder of images (any depth, one size, image_sets.py) or an `.npz` of
statistics. Folders are embedded with Inception-v3 (inception.py: the TF-FID network, TF1 legacy
bilinear resize to 299 x 299, input x / 128 - 1); a Gaussian is fitted to each set's 2048-d features
and their Frechet distance (frechet.py) is the FID:

    FID = ||mu_A - mu_B||^2 + Tr(S_A + S_B - 2 (S_A S_B)^(1/2))

`--kid` adds the KID (kid.py): the unbiased squared MMD under k(x, y) = (x . y / 2048 + 1)^3, the mean
and std over `--kid_subsets` subsets of `--kid_subset_size` features; it needs the features, which our
`.npz` files hold (pytorch-fid's do not).

The FID is biased upwards for finite sets, so compare FIDs only at the same N (and the same
reference); images smaller than 299 x 299 (e.g. 28 x 28 Fashion-MNIST) are upsampled, and their
FIDs are comparable only to FIDs computed the same way.

Needs the optional extra: pip install 'annotated-pipeline[inception]'. Exit status 2 with one line
for a missing extra, a damaged weight file, a missing or empty folder, or images of mixed sizes,
before any image is embedded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ..utils.errors import run_reporting
from .frechet import feature_statistics, frechet_distance, frechet_distance_between
from .image_sets import check_same_settings, common_size, image_files, load_statistics, read_batches, save_statistics
from .inception import PRECISIONS, InceptionFeatures
from .kid import kernel_distance


def is_statistics_file(source: str | os.PathLike) -> bool:
    return Path(source).suffix == ".npz" and Path(source).is_file()


def check_source(source) -> dict:
    """Everything about one input that can fail before the network runs: a folder's files and their common size,
    or a statistics file's contents."""
    if is_statistics_file(source):
        return {"name": os.fspath(source), "statistics": load_statistics(source)}
    files = image_files(source)
    if len(files) < 2:
        raise ValueError(f"{source} holds {len(files)} image; a covariance needs at least 2")
    return {"name": os.fspath(source), "files": files, "size": common_size(files)}


def statistics_of(source: dict, inception: InceptionFeatures | None, need_features: bool = False) -> dict:
    """{"mu", "sigma", "features", "num_images", "settings"} of a checked source (folder: embedded now)."""
    if "statistics" in source:
        statistics = source["statistics"]
        if need_features and statistics["features"] is None:
            raise ValueError(f"{source['name']} holds no features (only mu and sigma), which the KID needs: "
                             "give the folder, or statistics saved by `annotated-pipeline fid --save-stats`")
        return statistics
    files = source["files"]
    features = inception.features(read_batches(files, inception.batch_size), total=len(files),
                                  description=f"Inception features of {source['name']}")
    mu, sigma = feature_statistics(features)
    return {"mu": mu, "sigma": sigma, "features": features, "num_images": len(files), "settings": inception.settings}


def fid(a, b, kid: bool = False, precision: str = "fp32", batch_size: int = 50, kid_subsets: int = 100,
        kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """The Inception FID of two sources (folders or .npz statistics), with the KID if `kid`, as a dict."""
    sources = [check_source(a), check_source(b)]
    inception = None
    if any("files" in source for source in sources):
        inception = InceptionFeatures(precision, batch_size)
    start = time.perf_counter()
    stats = [statistics_of(source, inception, need_features=kid) for source in sources]
    check_same_settings(*((source["name"], s["settings"]) for source, s in zip(sources, stats)))
    report = {"fid": fid_of(*stats), "num_images": [s["num_images"] for s in stats],
              "sources": [s["name"] for s in sources]}
    if kid:
        report.update(kernel_distance(stats[0]["features"], stats[1]["features"], kid_subsets, kid_subset_size, seed))
    report["settings"] = next((s["settings"] for s in stats if s["settings"] is not None), None)
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


def fid_of(stats1: dict, stats2: dict) -> float:
    """The FID of two statistics dicts: from their features where both have them (frechet.py picks the cheaper
    path), else from mu and sigma (pytorch-fid's .npz files hold no features)."""
    if stats1["features"] is not None and stats2["features"] is not None:
        return frechet_distance_between(stats1["features"], stats2["features"])
    return frechet_distance(stats1["mu"], stats1["sigma"], stats2["mu"], stats2["sigma"])


def save_folder_statistics(folder, out, precision: str = "fp32", batch_size: int = 50) -> dict:
    """Embed a folder and write its statistics (and features) to `out` (.npz)."""
    source = check_source(folder)
    if "statistics" in source:
        raise ValueError(f"--save-stats reads a folder of images; {folder} is already statistics")
    if not Path(out).parent.is_dir():
        raise ValueError(f"cannot write {out}: {Path(out).parent} is not a folder")
    inception = InceptionFeatures(precision, batch_size)
    stats = statistics_of(source, inception)
    save_statistics(out, stats["features"], inception.settings)
    return {"saved": os.fspath(out), "num_images": stats["num_images"]}


def format_report(report: dict) -> str:
    counts = " and ".join(f"{n if n is not None else '?'}" for n in report["num_images"])
    lines = [f"FID: {report['fid']:.4f}   (Inception-v3 pool features, {counts} images)"]
    if "kid" in report:
        lines.append(f"KID: {report['kid']:.6f} +- {report['kid_std']:.6f}   (mean and std over "
                     f"{report['kid_num_subsets']} subsets of {report['kid_subset_size']})")
    return "\n".join(lines)


def main(argv=None, prog="python -m annotated_pipeline.evaluation.fid"):
    parser = argparse.ArgumentParser(
        prog=prog, description="Inception FID (and KID) of two image folders or .npz statistics, offline "
                               "(needs: pip install 'annotated-pipeline[inception]').")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="two image folders or .npz statistics files "
                        "(one folder with --save-stats)")
    parser.add_argument("--kid", action="store_true", help="also report the unbiased KID")
    parser.add_argument("--save-stats", dest="save_stats", metavar="OUT.npz", default=None,
                        help="write the statistics (mu, sigma, features) of the one folder given to OUT.npz")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="the network's arithmetic (bf16 only on CPUs with native bfloat16); default fp32")
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--kid_subsets", type=int, default=100)
    parser.add_argument("--kid_subset_size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seeds the KID's subsets")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.save_stats is not None and len(args.paths) != 1:
        parser.error(f"--save-stats writes the statistics of one folder; got {len(args.paths)} paths")
    if args.save_stats is None and len(args.paths) != 2:
        parser.error(f"give two paths (folders or .npz) to compare; got {len(args.paths)}")
    if args.batch_size < 1 or args.kid_subsets < 1 or args.kid_subset_size < 2:
        parser.error("--batch_size and --kid_subsets must be >= 1, --kid_subset_size >= 2")
    return run_reporting(prog, lambda: _run(args))


def _run(args):
    if args.save_stats is not None:
        result = save_folder_statistics(args.paths[0], args.save_stats, args.precision, args.batch_size)
        print(f"saved the statistics of {result['num_images']} images to {result['saved']}")
        return
    report = fid(*args.paths, kid=args.kid, precision=args.precision, batch_size=args.batch_size,
                 kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, seed=args.seed)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
