"""The annotation round trip: send a planned batch to an annotation tool (golden scenes
hidden in every annotator's queue), bring the labels back through the schema gate, and score
each annotator on the golden tasks (:mod:`.send`, :mod:`.load`)."""
