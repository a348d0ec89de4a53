"""Offline demo data: a small synthetic driving dataset and a simulated annotator.

The demo is shaped like FiftyOne's ``quickstart-groups`` (KITTI): every scene is a group
with a ``left`` and a ``right`` camera image and a ``pcd`` LiDAR sweep. Scenes are sampled
in 3D (``scenes``), projected into a stereo pinhole rig (``camera``), rendered with numpy
and Pillow (``render``) and ray-cast into a point cloud (``pointcloud``), so 2D boxes, 3D
cuboids and pixels agree. The pure modules (``algorithms/``) import neither FiftyOne nor torch; ``dataset``
and ``annotation`` are the FiftyOne glue.
"""
