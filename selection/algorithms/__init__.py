"""Pure selection algorithms: ZCore, k-center, targeting, uncertainty and batch planning.

Numpy arrays and dataclasses in and out; nothing here imports FiftyOne or torch.
"""
