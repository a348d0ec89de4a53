"""Build the offline demo dataset in FiftyOne (glue).

``load_demo_dataset`` samples scenes, renders the stereo images, simulates the LiDAR sweeps,
writes the media under a fresh build folder and adds one group per scene (slices ``left``,
``right`` and ``pcd``) in bulk. It validates everything before writing anything, and it
builds under a temporary dataset name and swaps at the end, so a failed rebuild with
``overwrite=True`` leaves the old dataset and its media untouched.

``add_demo_scenes`` is how a new raw batch arrives: more scenes (for example snow, the
novel domain) rendered into the same media folder, their ids continuing the numbering,
unlabeled, every sample tagged ``incoming:<name>``.

Field contract (every slice): ``scene_id`` (str), ``scene_index`` (int), ``time_of_day``
("day" / "night"), ``weather`` ("clear" / "rain" / "fog" / "snow"), ``near_duplicate_of`` (scene id
or None), ``oracle`` (true ``Detections``: 2D boxes with ``object_id``, ``occluded`` and
``truncated`` on camera slices; 3D cuboids with ``object_id`` and ``num_points`` on
``pcd``) and ``ground_truth`` (``Detections``, empty until an annotator fills it).
Camera slices also carry their calibration, as KITTI's per-frame calib files do:
``camera_intrinsics`` (3x3 ``K``, pixels) and ``camera_extrinsics`` (4x4, ego/LiDAR frame to
camera frame x right, y down, z forward), each flat and row-major (9 and 16 floats; read
them with :func:`annoloop.core.algorithms.pinhole.calibration`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tempfile
import uuid
from typing import Mapping

import fiftyone as fo
import numpy as np
from PIL import Image

from ..core.catalog import tagged_units
from ..core.locks import dataset_lock
from ..core.names import INCOMING_TAG_PREFIX
from ..core.runs import Progress
from ..core.views import slice_views
from .algorithms import scenes as sc
from .algorithms.camera import stereo_rig
from .algorithms.pointcloud import simulate_lidar, write_pcd
from .algorithms.render import render_camera

GENERATOR_VERSION = "1"
SLICES = ("left", "right", "pcd")
CAMERA_SLICES = ("left", "right")
POINT_CLOUD_SLICE = "pcd"
INFO_KEY = "annoloop_demo"
JPEG_QUALITY = 90
MIN_IMAGE_SIZE = (64, 32)
#: The defaults of :func:`load_demo_dataset`, which its operator's form shows too.
DEFAULT_NAME = "annoloop-demo"
DEFAULT_NUM_SCENES = 200
DEFAULT_SEED = 51
_CHUNK_SCENES = 100  # scenes rendered and added per add_samples call
_BUILD_PREFIX = "build-"


#: Metres (x forward, y left, z up) of the sweep shown in a point cloud's grid thumbnail:
#: the road ahead that the cameras see, where the objects are.
PROJECTION_BOUNDS = ((-5.0, -30.0, -3.0), (55.0, 30.0, 5.0))


def _project_point_clouds(dataset: fo.Dataset, build_dir: str) -> None:
    """Bird's-eye images of every sweep, height-shaded: the App shows them as the ``pcd``
    slice's thumbnails (``orthographic_projection_metadata``) instead of dark tiles."""
    import fiftyone.utils.utils3d as fou3d

    fou3d.compute_orthographic_projection_images(
        dataset.select_group_slices(POINT_CLOUD_SLICE),
        (-1, 256),
        os.path.join(build_dir, "pcd_projections"),
        shading_mode="height",
        bounds=PROJECTION_BOUNDS,
        progress=False,
    )


def load_demo_dataset(
    name: str = DEFAULT_NAME,
    num_scenes: int = DEFAULT_NUM_SCENES,
    seed: int = DEFAULT_SEED,
    media_dir: str | None = None,
    overwrite: bool = False,
    image_size: tuple[int, int] = (384, 128),
    progress: Progress | None = None,
    scene_config: sc.SceneConfig | None = None,
) -> fo.Dataset:
    """Create the persistent grouped demo dataset.

    Parameters
    ----------
    name : str
        Dataset name.
    num_scenes : int
        Number of scenes (groups), > 0. Each gives three samples.
    seed : int
        Same seed, same labels and byte-identical media (sample ids differ).
    media_dir : str, optional
        Root folder for media; defaults to ``<fo.config.default_dataset_dir>/<name>``. Each
        build writes into a fresh ``build-*`` subfolder of it.
    overwrite : bool
        Replace an existing dataset of this name (and, once the new one is in place, the
        old build's media folder).
    image_size : (int, int)
        Camera image ``(width, height)`` in pixels.
    progress : callable, optional
        Called as ``progress(fraction, message)`` while building; an exception raised by
        it aborts the build cleanly.
    scene_config : SceneConfig, optional
        The scene distribution (night share, weather mix, class mix, near-duplicates).

    Returns
    -------
    fiftyone.core.dataset.Dataset

    Raises
    ------
    ValueError
        On bad arguments, an existing ``name`` without ``overwrite=True`` or a media folder
        that cannot be written; nothing has been written or deleted then.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    sc.check_count("num_scenes", num_scenes)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    image_size = _check_image_size(image_size)
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable or None, got {type(progress).__name__}")
    if fo.dataset_exists(name) and not overwrite:
        raise ValueError(
            f"a dataset named {name!r} already exists; pass overwrite=True to replace it"
        )
    media_root = _check_writable_dir(
        media_dir if media_dir is not None else os.path.join(fo.config.default_dataset_dir, name)
    )
    scene_config = scene_config or sc.SceneConfig()
    report = progress or (lambda fraction, message: None)

    scenes = sc.sample_scenes(num_scenes, int(seed), scene_config)
    try:
        os.makedirs(media_root, exist_ok=True)
        build_dir = tempfile.mkdtemp(prefix=_BUILD_PREFIX, dir=media_root)
        os.chmod(build_dir, 0o755)  # mkdtemp makes it private; media is meant to be shared
    except OSError as e:
        raise ValueError(f"media_dir {media_root!r} cannot be written: {e}") from None

    staging: fo.Dataset | None = None
    try:
        staging = _new_dataset(f"{name}-building-{uuid.uuid4().hex[:8]}")
        cameras = stereo_rig(image_size)
        for d in SLICES:
            os.makedirs(os.path.join(build_dir, d))
        for start in range(0, num_scenes, _CHUNK_SCENES):
            chunk = scenes[start : start + _CHUNK_SCENES]
            report(
                0.95 * start / num_scenes,
                f"Rendering scenes {start + 1}-{start + len(chunk)} of {num_scenes}",
            )
            samples = [s for scene in chunk for s in _scene_samples(scene, cameras, build_dir)]
            # The values are built right here with known types, so skipping per-sample
            # validation is safe and saves about a fifth of the insert time.
            staging.add_samples(samples, validate=False, progress=False)
        # Declare the oracle's attributes (object_id, occluded, ...) so that the App can
        # filter on them: one schema scan instead of dynamic checks on every insert.
        staging.add_dynamic_sample_fields(fields="oracle")
        report(0.95, "Projecting the point clouds for the grid's thumbnails")
        _project_point_clouds(staging, build_dir)
        staging.info[INFO_KEY] = {
            "seed": int(seed),
            "num_scenes": int(num_scenes),
            "classes": list(sc.CLASSES),
            "image_size": list(image_size),
            "media_dir": build_dir,
            "generator_version": GENERATOR_VERSION,
            "scene_config": _config_json(scene_config),
        }
        report(0.97, "Replacing the old dataset" if fo.dataset_exists(name) else "Finishing")
        staging.persistent = True  # from here on it must survive even a failed swap
        staging.save()
    except BaseException:
        if staging is not None and fo.dataset_exists(staging.name):
            staging.delete()
        shutil.rmtree(build_dir, ignore_errors=True)
        raise

    old_media = _delete_dataset(name)
    staging.name = name
    if (
        old_media
        and os.path.basename(old_media).startswith(_BUILD_PREFIX)
        and old_media != build_dir
    ):
        shutil.rmtree(old_media, ignore_errors=True)
    report(1.0, f"Built {name!r}: {num_scenes} scenes, {len(SLICES) * num_scenes} samples")
    return staging


def add_demo_scenes(
    dataset: fo.Dataset,
    num_scenes: int,
    seed: int,
    name: str,
    scene_config: sc.SceneConfig | None = None,
    progress: Progress | None = None,
) -> dict:
    """Add a new raw batch of scenes to a demo dataset: the demo's way for new data to arrive.

    Parameters
    ----------
    dataset : Dataset
        A dataset built by :func:`load_demo_dataset`.
    num_scenes : int
        Scenes to add, > 0; their indices (and ids) continue after the dataset's last one.
    seed : int
        Non-negative seed. The dataset's own seed and config continue its distribution
        (scene ``i`` is the one a larger build would have had, unless it is a near-duplicate:
        those copy scenes of the same batch); another seed or config
        gives new data, e.g. ``SceneConfig(weather_probs={..., "snow": 0.1})``.
    name : str
        The arrival's name: every new sample is tagged ``incoming:<name>``.
    scene_config : SceneConfig, optional
        The batch's scene distribution; defaults to ``SceneConfig()``.
    progress : callable, optional
        Called as ``progress(fraction, message)`` while rendering.

    Returns
    -------
    dict
        ``tag``, ``scene_ids``, ``first_index``, ``num_scenes`` and the batch's ``weather``
        counts.

    Raises
    ------
    ValueError
        On bad arguments, a dataset that is not a demo, or a tag already in use; nothing
        has been written then.

    Examples
    --------
    >>> snowy = sc.SceneConfig(weather_probs={"clear": 0.6, "rain": 0.15, "fog": 0.15,
    ...                                       "snow": 0.1})
    >>> add_demo_scenes(dataset, 50, seed=7, name="week-2", scene_config=snowy)  # doctest: +SKIP
    """
    info = (dataset.info or {}).get(INFO_KEY) if isinstance(dataset, fo.Dataset) else None
    if not info or not os.path.isdir(info.get("media_dir", "")):
        raise ValueError(
            "add_demo_scenes needs a dataset built by load_demo_dataset (with its media folder "
            "on this machine); build one with load_demo_dataset first"
        )
    sc.check_count("num_scenes", num_scenes)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise ValueError(f"name must be a non-empty string without spaces, got {name!r}")
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable or None, got {type(progress).__name__}")
    tag = INCOMING_TAG_PREFIX + name
    scene_config = scene_config or sc.SceneConfig()
    report = progress or (lambda fraction, message: None)
    build_dir = info["media_dir"]
    cameras = stereo_rig(tuple(info["image_size"]))

    with dataset_lock(dataset, "add_demo_scenes"):
        dataset.reload()
        if tagged_units(dataset, [tag]):
            raise ValueError(f"tag {tag!r} is already in use; name the new batch differently")
        first = 1 + max(int(v.bounds("scene_index")[1]) for v in slice_views(dataset).values())
        scenes = sc.sample_scenes(num_scenes, int(seed), scene_config, first_index=first)
        try:
            for start in range(0, num_scenes, _CHUNK_SCENES):
                chunk = scenes[start : start + _CHUNK_SCENES]
                report(0.9 * start / num_scenes, f"Rendering new scenes {start + 1}-{start + len(chunk)}")
                samples = [s for scene in chunk for s in _scene_samples(scene, cameras, build_dir)]
                for sample in samples:
                    sample.tags = [tag]
                dataset.add_samples(samples, validate=False, progress=False)
            dataset.add_dynamic_sample_fields(fields="oracle")
            report(0.9, "Projecting the new point clouds")
            _project_point_clouds(dataset.match_tags(tag), build_dir)
        except BaseException:
            # Leave the dataset and its media folder as they were: no half-arrived batch.
            for view in slice_views(dataset).values():
                dataset.delete_samples(view.match_tags(tag))
            for scene in scenes:
                for folder, ext in [*((c.name, "jpg") for c in cameras), (POINT_CLOUD_SLICE, "pcd")]:
                    path = os.path.join(build_dir, folder, f"{scene.scene_id}.{ext}")
                    if os.path.exists(path):
                        os.remove(path)
            raise
        arrival = {
            "tag": tag,
            "seed": int(seed),
            "first_index": first,
            "num_scenes": int(num_scenes),
            "scene_config": _config_json(scene_config),
        }
        # A fresh copy: the reload above detached the dict read before it.
        info = dict(dataset.info[INFO_KEY])
        info["num_scenes"] = int(info["num_scenes"]) + int(num_scenes)
        info["arrivals"] = [*info.get("arrivals", []), arrival]
        dataset.info[INFO_KEY] = info
        dataset.save()
    weather: dict[str, int] = {}
    for scene in scenes:
        weather[scene.weather] = weather.get(scene.weather, 0) + 1
    report(1.0, f"Added {num_scenes} scenes tagged {tag!r}")
    return {
        "tag": tag,
        "scene_ids": [scene.scene_id for scene in scenes],
        "first_index": first,
        "num_scenes": int(num_scenes),
        "weather": weather,
    }


def _config_json(scene_config: sc.SceneConfig) -> dict:
    return {
        k: dict(v) if isinstance(v, Mapping) else v
        for k, v in dataclasses.asdict(scene_config).items()
    }


def _check_image_size(image_size) -> tuple[int, int]:
    try:
        width, height = image_size
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (width, height), got {image_size!r}") from None
    for v in (width, height):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"image_size must hold two ints, got {image_size!r}")
    if width < MIN_IMAGE_SIZE[0] or height < MIN_IMAGE_SIZE[1]:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {(width, height)}")
    return int(width), int(height)


def _check_writable_dir(path: str) -> str:
    """Absolute ``path`` if it is, or can be created as, a writable folder (writes nothing)."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"media_dir {path!r} cannot be created: {probe!r} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"media_dir {path!r} is not writable: no write permission on {probe!r}")
    return path


def _new_dataset(name: str) -> fo.Dataset:
    """An empty grouped dataset with the fields that could otherwise go undeclared.

    A field that is None on every sample (``ground_truth``, and ``near_duplicate_of`` in a
    small build) is never declared by ``add_samples``; everything else is declared by the
    inserts. Each ``add_sample_field`` reloads the dataset, so declare only these.
    """
    dataset = fo.Dataset(name)
    dataset.add_group_field("group", default=CAMERA_SLICES[0])
    dataset.add_sample_field("near_duplicate_of", fo.StringField)
    dataset.add_sample_field(
        "ground_truth", fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections
    )
    dataset.default_classes = list(sc.CLASSES)
    dataset.classes = {"oracle": list(sc.CLASSES), "ground_truth": list(sc.CLASSES)}
    # What annotators may draw in `ground_truth`; the schema gate checks every label against it.
    # FiftyOne only accepts schema attributes that are declared on the field.
    schema = ground_truth_schema()
    for attribute in schema["attributes"]:
        ftype = fo.BooleanField if attribute["type"] == "bool" else fo.StringField
        dataset.add_sample_field(f"ground_truth.detections.{attribute['name']}", ftype)
    dataset.set_label_schemas({"ground_truth": schema})
    # z is up in the ego frame; look at the road from behind and above the ego car.
    dataset.app_config.plugins["3d"] = {
        "defaultUp": [0, 0, 1],
        "defaultCameraPosition": {"x": -20, "y": 0, "z": 15},
    }
    dataset.save()
    return dataset


def ground_truth_schema() -> dict:
    """FiftyOne label schema of the demo's annotation field (2D boxes and 3D cuboids)."""
    text = {"type": "str", "component": "text"}
    return {
        "type": "detections",
        "component": "dropdown",
        "classes": list(sc.CLASSES),
        "attributes": [
            {"name": "occluded", "type": "bool", "component": "toggle"},
            {"name": "truncated", "type": "bool", "component": "toggle"},
            {"name": "annotator", **text},
            {"name": "batch", **text},
        ],
    }


def _delete_dataset(name: str) -> str | None:
    """Delete dataset ``name`` if it exists; return its demo media folder, if any."""
    if not fo.dataset_exists(name):
        return None
    old = fo.load_dataset(name)
    media = (old.info or {}).get(INFO_KEY, {}).get("media_dir")
    old.delete()
    return media


def _scene_samples(scene: sc.Scene, cameras, build_dir: str) -> list[fo.Sample]:
    """Render, write and wrap one scene as its three grouped samples."""
    group = fo.Group()
    common = {
        "scene_id": scene.scene_id,
        "scene_index": scene.index,
        "time_of_day": scene.time_of_day,
        "weather": scene.weather,
        "near_duplicate_of": scene.near_duplicate_of,
        "ground_truth": None,
    }
    labels = scene.labels
    parts = sc.expand_parts(scene)
    samples = []
    for camera in cameras:
        pixels, cam_labels = render_camera(scene, camera, parts)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        path = os.path.join(build_dir, camera.name, f"{scene.scene_id}.jpg")
        with open(path, "wb") as f:
            f.write(buffer.getbuffer())
        detections = [
            fo.Detection(
                label=labels[row],
                bounding_box=[float(v) for v in box],
                object_id=int(scene.object_id[row]),
                occluded=bool(occ),
                truncated=bool(trunc),
            )
            for row, box, occ, trunc in zip(
                cam_labels.rows, cam_labels.boxes, cam_labels.occluded, cam_labels.truncated
            )
        ]
        samples.append(
            fo.Sample(
                filepath=path,
                group=group.element(camera.name),
                metadata=fo.ImageMetadata(
                    size_bytes=buffer.getbuffer().nbytes,
                    mime_type="image/jpeg",
                    width=camera.width,
                    height=camera.height,
                    num_channels=3,
                ),
                oracle=fo.Detections(detections=detections),
                # KITTI-style per-frame calibration (see core/algorithms/pinhole.py): K, and
                # the LiDAR/ego -> camera transform the pcd slice's cuboids project with.
                camera_intrinsics=camera.intrinsics.ravel().tolist(),
                camera_extrinsics=camera.extrinsics.ravel().tolist(),
                **common,
            )
        )

    sweep = simulate_lidar(scene, parts)
    path = os.path.join(build_dir, POINT_CLOUD_SLICE, f"{scene.scene_id}.pcd")
    size = write_pcd(path, sweep.points, sweep.intensity)
    counts = sweep.points_per_object(len(labels))
    rotation = scene.rotation
    cuboids = [
        fo.Detection(
            label=labels[row],
            location=[float(v) for v in scene.location[row]],
            dimensions=[float(v) for v in scene.dimensions[row]],
            rotation=[float(v) for v in rotation[row]],
            object_id=int(scene.object_id[row]),
            num_points=int(counts[row]),
        )
        for row in range(len(labels))
    ]
    samples.append(
        fo.Sample(
            filepath=path,
            group=group.element(POINT_CLOUD_SLICE),
            metadata=fo.Metadata(size_bytes=size, mime_type="application/octet-stream"),
            oracle=fo.Detections(detections=cuboids),
            **common,
        )
    )
    return samples
