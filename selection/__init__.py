"""Selection: embeddings, ZCore coverage scores, targeting and batch planning.

``algorithms/`` holds the pure cores on arrays; the modules beside it read a FiftyOne
collection, call them, and write results back.
"""
