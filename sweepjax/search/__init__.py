"""The search: the space and the policies that decide between chunks (schedulers, PBT,
searchers), each checking its own options. They take plain values (a direction, budgets, rows)
and need nothing above this layer: never the engine, the config object, the sweep state or a
results file. Module by module: the map in `docs/architecture.md`; the policies in
`docs/adaptive.md`.
"""
