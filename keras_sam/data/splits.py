"""A deterministic train / validation / test split, stratified by class, that never lets the same
image (same pixels, whatever its file name) sit in two splits; saved as a manifest."""

import os
import random

from keras_sam.common.storage import write_json

SPLITS = ("train", "val", "test")


def split_lesions(lesions, val=0.15, test=0.15, seed=0):
    """Splits lesions by image, class by class, keeping identical images together, and the frames
    or slices of one file (a lesion's `group`) together.

    A class with at least 3 groups of identical images gets at least one in each split (when its
    ratio is above 0); a class with fewer goes to train first and is reported in `warnings`.

    Args:
        lesions: Lesion records (keras_sam.data.Lesion).
        val, test: fractions of each class's images for validation and test.
        seed: the same seed gives the same split.

    Returns:
        (splits, warnings): {"train": [...], "val": [...], "test": [...]} lists of lesions, and a
        list of messages about small classes.
    """
    if val < 0 or test < 0 or val + test >= 1:
        raise ValueError(
            f"split ratios must be >= 0 and leave some data for training; got val={val}, test={test}"
        )
    groups = {}
    for lesion, key in zip(lesions, group_keys(lesions)):
        groups.setdefault(lesion.label, {}).setdefault(key, []).append(lesion)
    splits = {name: [] for name in SPLITS}
    warnings = []
    for label in sorted(groups):
        keys = sorted(groups[label])
        random.Random(f"{seed}:{label}").shuffle(keys)
        sizes = _split_sizes(len(keys), val, test)
        if len(keys) < 3 and (val > 0 or test > 0):
            warnings.append(
                f"class {label!r} has only {len(keys)} distinct lesion image(s): not every split "
                "gets one"
            )
        start = 0
        for name in ("test", "val", "train"):
            for key in keys[start:start + sizes[name]]:
                splits[name].extend(groups[label][key])
            start += sizes[name]
    return splits, warnings


def group_keys(lesions):
    """One key per lesion, shared by lesions that must stay in one split: same image content, or
    same `group` (the frames of one cine, the slices of one volume), transitively.

    A lesion that shares nothing with others keys by its image content, as before groups existed.
    """
    parent = {}

    def find(node):
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for lesion in lesions:
        group = getattr(lesion, "group", None)
        if group is not None:
            first, second = find(("image", lesion.image_key)), find(("group", group))
            if first != second:
                parent[max(first, second)] = min(first, second)
    members = {}
    for lesion in lesions:
        members.setdefault(find(("image", lesion.image_key)), set()).add(lesion.image_key)
    # The smallest image key in a set names it: deterministic, and unchanged for ungrouped lesions.
    return [min(members[find(("image", lesion.image_key))]) for lesion in lesions]


def _split_sizes(count, val, test):
    sizes = {"test": round(count * test), "val": round(count * val)}
    for name, ratio in (("test", test), ("val", val)):
        if ratio > 0 and sizes[name] == 0 and count >= 3:
            sizes[name] = 1
    while sizes["test"] + sizes["val"] >= count and count > 0 and sizes["test"] + sizes["val"] > 0:
        larger = "test" if sizes["test"] >= sizes["val"] else "val"
        sizes[larger] -= 1
    sizes["train"] = count - sizes["test"] - sizes["val"]
    return sizes


def write_manifest(path, splits, data_root, seed, val, test, warnings=()):
    """Writes the split as JSON (paths relative to the data folder), atomically."""
    manifest = {
        "data": os.path.abspath(data_root),
        "seed": seed,
        "ratios": {"val": val, "test": test},
        "warnings": list(warnings),
        "splits": {
            name: sorted({os.path.relpath(l.image_path, data_root) for l in splits[name]})
            for name in SPLITS
        },
    }
    write_json(path, manifest)
    return manifest


def apply_manifest(manifest, lesions, data_root):
    """Re-creates a saved split: each lesion goes where its image went; unknown images are left out."""
    where = {}
    for name in SPLITS:
        for relative in manifest["splits"][name]:
            where[os.path.normpath(os.path.join(data_root, relative))] = name
    splits = {name: [] for name in SPLITS}
    for lesion in lesions:
        name = where.get(os.path.normpath(lesion.image_path))
        if name:
            splits[name].append(lesion)
    return splits
