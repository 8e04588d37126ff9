"""What the evaluation tests share: small COCO keypoint files, results and configs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.config import load_config
from pkmodel.data.prepare import prepare_split
from pkmodel.engine.evaluate import prepare_for_evaluation

COCO_MINI = ("coco_mini", "annotations", "person_keypoints_train2017.json")


def eval_config(**sets):
    """The defaults with ``section.key`` values set as --set would."""
    return load_config(None, [f"{k}={v}" for k, v in sets.items()], {}, env={})


def coco_file(tmp_path, people, width=400, height=300):
    """A one-image COCO keypoint file; people = list of (keypoints (K, 3), bbox, area)."""
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": list(bbox),
         "area": float(area), "keypoints": np.asarray(kp, float).reshape(-1).tolist(),
         "num_keypoints": int((np.asarray(kp)[:, 2] > 0).sum())}
        for i, (kp, bbox, area) in enumerate(people)
    ]  # fmt: skip
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": width, "height": height}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def coco_result(kp, score=1.0):
    """A COCO keypoint result on image 1 (every joint's v slot 1)."""
    triples = np.concatenate([np.asarray(kp, float)[:, :2], np.ones((NUM_JOINTS, 1))], 1)
    return {"image_id": 1, "category_id": 1, "keypoints": triples.reshape(-1).tolist(),
            "score": score}  # fmt: skip


def random_person(rng, x0=100.0, y0=60.0, size=150.0):
    """(keypoints K x 3, bbox, area) of a person with every joint labelled, inside the box."""
    kp = np.zeros((NUM_JOINTS, 3))
    kp[:, 0] = x0 + rng.uniform(0, size, NUM_JOINTS)
    kp[:, 1] = y0 + rng.uniform(0, size, NUM_JOINTS)
    kp[:, 2] = 2
    return kp, [x0, y0, size, size], size * size * 0.6


def prepare_people(tmp_path, name, annotations, images, cfg, all_people=True):
    """``annotations`` prepared into ``tmp_path / name``: every person (as `pkmodel evaluate
    --annotations` does) or with the training filters."""
    if all_people:
        return prepare_for_evaluation(annotations, images, tmp_path / name, cfg).labels
    params = dataclasses.replace(cfg.prepare, workers=1)
    return prepare_split("val", images, annotations, tmp_path / name, params, False).labels
