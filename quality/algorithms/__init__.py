"""Pure label-quality algorithms: numpy arrays and dataclasses in and out, no FiftyOne."""
