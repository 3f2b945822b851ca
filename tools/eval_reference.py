#!/usr/bin/env python3
"""Reference metrics for the Rust evaluators, computed with the reference tools.

    python tools/eval_reference.py [--out tests/fixtures/eval] [--seed 0]

Writes small random fixtures (ground truth and predictions with crowd regions, VOID pixels,
empty images and unmatched predictions) under --out, then computes on them:
  * COCO mask AP with pycocotools' COCOeval (iouType="segm")          -> instance/expected.json
  * PQ with panopticapi itself (PyPI `panopticapi-lite`, the cocodataset/panopticapi code,
    installed with --no-deps: its numpy<2 pin is stricter than needed)  -> panoptic/expected.json
  * mIoU / fwIoU / mACC / pACC as detectron2's SemSegEvaluator defines
    them, computed with scikit-learn's jaccard/recall/accuracy scores   -> semantic/expected.json
  * RLE encodings / polygon rasterisations with pycocotools.mask        -> rle/cases.json
The Rust tests (tests/eval_reference.rs) read the same files and must agree to 1e-4.
Pinned versions: tools/requirements-eval.txt.
"""
import argparse
import json
import os
from collections import defaultdict

import numpy as np
from PIL import Image
import pycocotools.mask as mask_util
from panopticapi.evaluation import pq_compute_single_core
from panopticapi.utils import id2rgb, rgb2id
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn.metrics import accuracy_score, jaccard_score, recall_score


# ----------------------------------------------------------------------------------------------
# shapes

def ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 <= 1.0)


def rect(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), bool)
    m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return m


def shift(m, dy, dx):
    out = np.zeros_like(m)
    h, w = m.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = m[ys, xs]
    return out


def perturb(rng, m):
    """Shift by a few pixels and flip some boundary pixels."""
    m = shift(m, int(rng.integers(-3, 4)), int(rng.integers(-3, 4)))
    noise = rng.random(m.shape) < 0.05
    return np.logical_xor(m, noise & (shift(m, 1, 0) | shift(m, 0, 1)))


def polygon(rng, cy, cx, r, n):
    ang = np.sort(rng.random(n)) * 2 * np.pi
    rad = r * (0.6 + 0.4 * rng.random(n))
    pts = []
    for a, q in zip(ang, rad):
        pts += [round(float(cx + q * np.cos(a)), 2), round(float(cy + q * np.sin(a)), 2)]
    return pts


def shoelace(p):
    x, y = np.array(p[0::2]), np.array(p[1::2])
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def enc(m):
    r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode("ascii")}


# ----------------------------------------------------------------------------------------------
# RLE cases

def make_rle_cases(rng, out):
    cases = {"masks": [], "polygons": [], "ious": []}
    shapes = [(1, 1), (1, 7), (9, 1), (5, 5), (13, 17), (40, 33), (64, 64)]
    rles = []
    for i, (h, w) in enumerate(shapes * 2):
        kind = i % 4
        if kind == 0:
            m = rng.random((h, w)) < 0.5
        elif kind == 1:
            m = ellipse(h, w, h / 2, w / 2, h / 3, w / 3)
        elif kind == 2:
            m = np.zeros((h, w), bool) if i % 8 == 2 else np.ones((h, w), bool)
        else:
            m = rng.random((h, w)) < 0.9
        r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        rles.append((h, w, r))
        cases["masks"].append({
            "height": h, "width": w,
            "data": "".join("1" if v else "0" for v in m.reshape(-1)),
            "counts": r["counts"].decode("ascii"),
            "area": int(mask_util.area(r)),
            "bbox": [float(v) for v in mask_util.toBbox(r)],
        })
    for i in range(24):
        h, w = int(rng.integers(5, 60)), int(rng.integers(5, 60))
        n = int(rng.integers(3, 9))
        if i % 3 == 0:
            # may leave the image and cross itself
            pts = [round(float(v), 3) for v in rng.uniform(-5, max(h, w) + 5, 2 * n)]
        else:
            pts = polygon(rng, h / 2, w / 2, min(h, w) / 2, n)
        parts = [pts] if i % 4 else [pts, polygon(rng, h / 3, w / 3, min(h, w) / 4, 5)]
        r = mask_util.merge(mask_util.frPyObjects(parts, h, w))
        cases["polygons"].append({
            "height": h, "width": w, "polygons": parts,
            "counts": r["counts"].decode("ascii"), "area": int(mask_util.area(r)),
        })
    # IoU between same-sized masks, with crowd flags
    same = [r for (h, w, r) in rles if (h, w) == (64, 64)] + [
        mask_util.encode(np.asfortranarray(ellipse(64, 64, 30, 30, 20, 12).astype(np.uint8)))]
    crowd = [0, 1, 0]
    o = mask_util.iou(same, same, crowd)
    cases["ious"] = {
        "counts": [r["counts"].decode("ascii") for r in same], "size": [64, 64],
        "iscrowd": crowd, "iou": np.asarray(o).tolist(),
    }
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f)


# ----------------------------------------------------------------------------------------------
# instance segmentation (COCO AP)

def make_instance(rng, out):
    sizes = [(112, 128), (100, 120), (128, 96), (64, 64), (120, 120), (90, 140), (128, 128), (80, 100)]
    cats = [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}, {"id": 7, "name": "c"},
            {"id": 9, "name": "never-in-gt"}]
    images, anns, results = [], [], []
    ann_id = 1
    for i, (h, w) in enumerate(sizes):
        img_id = 10 + 3 * i
        images.append({"id": img_id, "file_name": f"{img_id:04d}.jpg", "height": h, "width": w})
        n_gt = 0 if i == 5 else int(rng.integers(2, 7))
        gts = []
        for j in range(n_gt):
            cat = int(rng.choice([1, 3, 7]))
            r = float(rng.choice([4, 8, 14, 25, 40, 60]))
            cy, cx = float(rng.uniform(r / 2, h - r / 2)), float(rng.uniform(r / 2, w - r / 2))
            crowd = j == 0 and i % 3 == 1
            style = (i + j) % 3
            if crowd:
                m = rect(h, w, int(cy - r), int(cx - r), int(cy + r), int(cx + r))
                seg = {"size": [h, w], "counts": [int(c) for c in rle_counts(m)]}
                area = float(m.sum())
            elif style == 0:
                seg = [polygon(rng, cy, cx, r, int(rng.integers(5, 12)))]
                area = shoelace(seg[0])
                m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(seg, h, w))).astype(bool)
            elif style == 1:
                m = ellipse(h, w, cy, cx, r, r * float(rng.uniform(0.5, 1.5)))
                seg, area = enc(m), float(m.sum())
            else:
                m = rect(h, w, int(cy - r / 2), int(cx - r), int(cy + r / 2), int(cx + r))
                seg = {"size": [h, w], "counts": [int(c) for c in rle_counts(m)]}
                area = float(m.sum())
            anns.append({"id": ann_id, "image_id": img_id, "category_id": cat, "segmentation": seg,
                         "area": area, "iscrowd": int(crowd),
                         "bbox": [float(v) for v in mask_util.toBbox(mask_util.encode(
                             np.asfortranarray(m.astype(np.uint8))))]})
            ann_id += 1
            gts.append((cat, m, crowd))
        if i == 7:
            continue  # an image with ground truth but no predictions
        # predictions: perturbed copies (sometimes two, sometimes the wrong class), false positives
        for cat, m, crowd in gts:
            if crowd:
                for _ in range(3):  # small detections inside the crowd region
                    ys, xs = np.nonzero(m)
                    k = int(rng.integers(len(ys)))
                    d = ellipse(h, w, ys[k], xs[k], 3, 3) & m
                    results.append(det(img_id, cat, d, rng))
                continue
            if rng.random() < 0.85:
                results.append(det(img_id, cat, perturb(rng, m), rng))
            if rng.random() < 0.3:
                results.append(det(img_id, cat, perturb(rng, m), rng))
            if rng.random() < 0.2:
                results.append(det(img_id, int(rng.choice([1, 3, 7, 9])), perturb(rng, m), rng))
        for _ in range(int(rng.integers(0, 4))):
            r = float(rng.choice([3, 6, 12, 30]))
            d = ellipse(h, w, rng.uniform(0, h), rng.uniform(0, w), r, r)
            results.append(det(img_id, int(rng.choice([1, 3, 7, 9])), d, rng))
        if i == 2:  # more than maxDets=100 detections of one class in one image
            for _ in range(105):
                d = ellipse(h, w, rng.uniform(0, h), rng.uniform(0, w), 2, 2)
                results.append(det(img_id, 3, d, rng))
    gt = {"images": images, "annotations": anns, "categories": cats}
    with open(os.path.join(out, "instances.json"), "w") as f:
        json.dump(gt, f)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)

    coco = COCO(os.path.join(out, "instances.json"))
    dt = coco.loadRes(os.path.join(out, "results.json"))
    ev = COCOeval(coco, dt, "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({k: float(v) for k, v in zip(names, ev.stats)}, f, indent=1)


def rle_counts(m):
    flat = m.reshape(-1, order="F").astype(np.uint8)
    counts, prev, run = [], 0, 0
    for v in flat:
        if v != prev:
            counts.append(run)
            run, prev = 0, v
        run += 1
    counts.append(run)
    return counts


def det(img_id, cat, m, rng):
    # scores on a 0.05 grid so that ties (stable ordering) are exercised
    return {"image_id": img_id, "category_id": cat, "segmentation": enc(m),
            "score": round(float(rng.integers(1, 20)) * 0.05, 2)}


# ----------------------------------------------------------------------------------------------
# panoptic (PQ with panopticapi; its id2rgb / rgb2id for the PNGs)

def make_panoptic(rng, out):
    cats = [{"id": 1, "name": "disc", "isthing": 1}, {"id": 2, "name": "box", "isthing": 1},
            {"id": 5, "name": "sky", "isthing": 0}, {"id": 8, "name": "grass", "isthing": 0}]
    h, w = 24, 32
    os.makedirs(os.path.join(out, "panoptic"), exist_ok=True)
    os.makedirs(os.path.join(out, "pred"), exist_ok=True)
    gt_json = {"images": [], "annotations": [], "categories": cats}
    pred_json = {"annotations": []}
    for i in range(7):
        img_id = 100 + i
        name = f"{img_id}.png"
        gt_json["images"].append({"id": img_id, "file_name": f"{img_id}.jpg", "height": h, "width": w})
        gt = np.zeros((h, w), np.uint32)
        segs = []
        nid = [1]

        def add(m, cat, crowd=0, target=gt, lst=segs):
            sid = int(rng.integers(1, 2 ** 20)) if i % 2 else nid[0]
            nid[0] += 1
            target[m] = sid
            lst.append({"id": sid, "category_id": cat, "iscrowd": crowd})

        if i != 3:  # image 3: all VOID, no segments
            split = int(rng.integers(6, 18))
            add(rect(h, w, 0, 0, split, w), 5)
            add(rect(h, w, split, 0, h, w), 8)
            for j in range(int(rng.integers(1, 5))):
                cat = int(rng.choice([1, 2]))
                cy, cx, r = rng.uniform(3, h - 3), rng.uniform(3, w - 3), rng.uniform(2, 7)
                m = ellipse(h, w, cy, cx, r, r) if cat == 1 else rect(
                    h, w, int(cy - r), int(cx - r), int(cy + r), int(cx + r))
                add(m, cat)
            if i % 3 == 1:  # a crowd region of discs
                add(rect(h, w, 1, 1, 8, 10), 1, crowd=1)
            # VOID band
            gt[:, int(rng.integers(0, w - 2)):][:, :2] = 0
        present = set(np.unique(gt).tolist())
        segs = [s for s in segs if s["id"] in present]
        for s in segs:
            s["area"] = int((gt == s["id"]).sum())
        Image.fromarray(id2rgb(gt)).save(os.path.join(out, "panoptic", name))
        gt_json["annotations"].append({"image_id": img_id, "file_name": name, "segments_info": segs})

        pred = np.zeros((h, w), np.uint32)
        psegs = []
        if i != 5:  # image 5: empty prediction
            nid[0] = 1
            for s in segs:
                m = perturb(rng, gt == s["id"]) if rng.random() < 0.8 else (gt == s["id"])
                cat = s["category_id"] if rng.random() < 0.85 else int(rng.choice([1, 2, 5, 8]))
                if rng.random() < 0.9:
                    add(m, cat, target=pred, lst=psegs)
            # a false positive, one mostly on VOID, one inside a crowd region
            add(ellipse(h, w, rng.uniform(0, h), rng.uniform(0, w), 3, 3), int(rng.choice([1, 2])),
                target=pred, lst=psegs)
            add(gt == 0, 2, target=pred, lst=psegs)
            if i % 3 == 1:
                add(rect(h, w, 2, 2, 6, 6), 1, target=pred, lst=psegs)
        present = set(np.unique(pred).tolist())
        psegs = [s for s in psegs if s["id"] in present]
        Image.fromarray(id2rgb(pred)).save(os.path.join(out, "pred", name))
        pred_json["annotations"].append({"image_id": img_id, "file_name": name, "segments_info": psegs})
    with open(os.path.join(out, "panoptic.json"), "w") as f:
        json.dump(gt_json, f)
    with open(os.path.join(out, "pred.json"), "w") as f:
        json.dump(pred_json, f)
    res = pq_compute(os.path.join(out, "panoptic.json"), os.path.join(out, "pred.json"),
                     os.path.join(out, "panoptic"), os.path.join(out, "pred"))
    res["semantic"] = panoptic_semseg(out, gt_json, pred_json)
    res["instance"] = panoptic_as_instances(out, gt_json, pred_json)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(res, f, indent=1)


def panoptic_as_instances(out, gt_json, pred_json):
    """COCO mask AP of instance results against the thing segments of the panoptic ground truth
    (crowd stays crowd, area from the JSON). Results: the predicted thing segments with random
    scores, written to results.json."""
    rng = np.random.default_rng(12345)  # own stream: keeps the other fixtures unchanged
    things = {c["id"] for c in gt_json["categories"] if c["isthing"]}
    inst = {"images": gt_json["images"], "categories": [c for c in gt_json["categories"] if c["isthing"]],
            "annotations": []}
    for g in gt_json["annotations"]:
        ids = rgb2id(np.array(Image.open(os.path.join(out, "panoptic", g["file_name"]))))
        for seg in g["segments_info"]:
            if seg["category_id"] in things:
                inst["annotations"].append({
                    "id": len(inst["annotations"]) + 1, "image_id": g["image_id"],
                    "category_id": seg["category_id"], "segmentation": enc(ids == seg["id"]),
                    "area": seg["area"], "iscrowd": seg["iscrowd"]})
    results = []
    for p in pred_json["annotations"]:
        ids = rgb2id(np.array(Image.open(os.path.join(out, "pred", p["file_name"]))))
        for seg in p["segments_info"]:
            if seg["category_id"] in things:
                results.append(det(p["image_id"], seg["category_id"], ids == seg["id"], rng))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)
    coco = COCO()
    coco.dataset = inst
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(os.path.join(out, "results.json")), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    return {k: float(v) for k, v in zip(names, ev.stats)}


def panoptic_semseg(out, gt_json, pred_json):
    """mIoU of the semantic view: pixel -> contiguous class of its segment (crowd included),
    VOID -> ignore in the ground truth and "no class" in the prediction."""
    k = len(gt_json["categories"])
    index = {c["id"]: i for i, c in enumerate(gt_json["categories"])}
    gts, prs = [], []
    preds = {a["image_id"]: a for a in pred_json["annotations"]}
    for g in gt_json["annotations"]:
        p = preds[g["image_id"]]
        maps = []
        for folder, ann in [("panoptic", g), ("pred", p)]:
            ids = rgb2id(np.array(Image.open(os.path.join(out, folder, ann["file_name"]))))
            lab = np.full(ids.shape, k, np.int64)
            for seg in ann["segments_info"]:
                lab[ids == seg["id"]] = index[seg["category_id"]]
            maps.append(lab.reshape(-1))
        gl, pl = maps
        keep = gl != k  # VOID in the ground truth is ignored
        gts.append(gl[keep])
        prs.append(pl[keep])
    return semseg_metrics(np.concatenate(gts), np.concatenate(prs), k)


def pq_compute(gt_json_file, pred_json_file, gt_folder, pred_folder):
    """PQ with panopticapi itself (`pq_compute_single_core` + `PQStat.pq_average`, the functions
    `panopticapi.evaluation.pq_compute` runs, minus its process pool), plus the raw statistics."""
    gt_json = json.load(open(gt_json_file))
    pred_json = json.load(open(pred_json_file))
    categories = {el["id"]: el for el in gt_json["categories"]}
    pred_annotations = {el["image_id"]: el for el in pred_json["annotations"]}
    matched = [(g, pred_annotations[g["image_id"]]) for g in gt_json["annotations"]]
    stat = pq_compute_single_core(0, matched, gt_folder, pred_folder, categories)
    results = {}
    for name, isthing in [("All", None), ("Things", True), ("Stuff", False)]:
        results[name], per_class = stat.pq_average(categories, isthing=isthing)
        if name == "All":
            results["per_class"] = {str(k): v for k, v in per_class.items()}
    results["stats"] = {
        str(k): {"iou": float(v.iou), "tp": v.tp, "fp": v.fp, "fn": v.fn}
        for k, v in stat.pq_per_cat.items()
        if v.tp + v.fp + v.fn > 0
    }
    return results


# ----------------------------------------------------------------------------------------------
# semantic (detectron2 SemSegEvaluator definition)

def semseg_metrics(gt, pred, k):
    """detectron2 SemSegEvaluator's numbers computed with scikit-learn (an implementation
    independent of detectron2 and of this project): `gt` and `pred` are flat label arrays of the
    pixels with a valid ground truth; `pred` may hold k ("no class", VOID in a panoptic
    prediction), which counts as a miss of the ground-truth class. Classes absent from the ground
    truth are left out of the means (detectron2: `acc_valid`, `iou_valid`)."""
    labels = list(range(k))
    iou = jaccard_score(gt, pred, labels=labels, average=None, zero_division=0.0)
    acc = recall_score(gt, pred, labels=labels, average=None, zero_division=0.0)
    pos_gt = np.bincount(gt, minlength=k)[:k].astype(float)
    valid = pos_gt > 0
    weights = pos_gt / pos_gt.sum()
    return {
        "num_classes": k,
        "mIoU": float(np.mean(iou[valid])),
        "fwIoU": float(np.sum(iou[valid] * weights[valid])),
        "mACC": float(np.mean(acc[valid])),
        "pACC": float(accuracy_score(gt, pred)),
        "per_class_iou": [float(v) if valid[i] else None for i, v in enumerate(iou)],
    }


def make_semantic(rng, out, k=6, ignore=255):
    os.makedirs(os.path.join(out, "labels"), exist_ok=True)
    os.makedirs(os.path.join(out, "pred"), exist_ok=True)
    gts, prs = [], []
    for i in range(5):
        h, w = 20 + i, 24
        gt = np.zeros((h, w), np.uint8)
        gt[:] = int(rng.integers(0, k - 1))  # class k-1 never in the ground truth
        for _ in range(4):
            gt[ellipse(h, w, rng.uniform(0, h), rng.uniform(0, w), 5, 7)] = int(rng.integers(0, k - 1))
        gt[rng.random((h, w)) < 0.05] = ignore
        pred = gt.copy()
        pred[pred == ignore] = int(rng.integers(0, k))
        noise = rng.random((h, w)) < 0.2
        pred[noise] = rng.integers(0, k, int(noise.sum()))
        name = f"s{i:02d}.png"
        Image.fromarray(gt).save(os.path.join(out, "labels", name))
        Image.fromarray(pred).save(os.path.join(out, "pred", name))
        g = gt.astype(np.int64).reshape(-1)
        keep = g != ignore
        gts.append(g[keep])
        prs.append(pred.astype(np.int64).reshape(-1)[keep])
    res = semseg_metrics(np.concatenate(gts), np.concatenate(prs), k)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "eval"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    for sub, fn in [("rle", make_rle_cases), ("instance", make_instance), ("panoptic", make_panoptic),
                    ("semantic", make_semantic)]:
        d = os.path.join(args.out, sub)
        os.makedirs(d, exist_ok=True)
        fn(rng, d)
        print("wrote", d)


if __name__ == "__main__":
    main()
