"""The ground floor every stage stands on: names, dataset views, the unit catalog, records.

Nothing here knows about a particular stage; every stage package imports from here, and
nothing here imports a stage.
"""
