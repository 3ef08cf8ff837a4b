"""Training rights (Art. 23(5)) in two floors: ``rights.vocab`` (floor 2) parses and decides and is what format
handlers use; ``rights.actions`` (floor 5) reads and writes files through the format registry. This package root
imports neither, so a format module importing ``rights.vocab`` never pulls the actions (and the registry) in.
"""
