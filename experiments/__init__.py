"""The built-in experiments, shipped inside the package as `sweepjax.experiments`.

Each file is a sweep as code (`get_config()`); `sweepjax run NAME` finds `NAME.py` in
`./experiments/` first, then here.
"""
