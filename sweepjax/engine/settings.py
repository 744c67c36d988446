"""The engine's named settings, readable without importing JAX (the command's help and the
config keys list them before anything heavy loads).
"""

PLACEMENTS = ("auto", "device", "stream")  # where the training set lives: `data_placement`
NORMALIZATIONS = ("standard", "scale", "none")  # how inputs are scaled: `normalize`
PRECISIONS = ("float32", "bfloat16")  # the compute dtype: `precision`
