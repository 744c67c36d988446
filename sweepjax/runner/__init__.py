"""`run` and `resume`: a sweep's folder, data and checks, then its population trained by the
chunk loop with its checkpointer, progress bar and trackers. Module by module: the map in
`docs/architecture.md`.
"""
