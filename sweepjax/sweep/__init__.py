"""A sweep on the host, on top of the engine and the search: the config and one spec per key,
the sweep state, the policies it builds, the loop over chunks, checkpoints with their typed
metadata record, the folder and its lock, and the result files. Module by module: the map in
`docs/architecture.md`.
"""
