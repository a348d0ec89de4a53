"""Pure demo generators: 3D scenes, the stereo camera, rendering, LiDAR and the annotator."""
