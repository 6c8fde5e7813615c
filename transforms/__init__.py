"""Beam PTransforms and DoFns of the dataset builder.

Nothing here imports TensorFlow: only the process that hosts a model needs it, and it imports
it quietly when it loads the model (`transforms.inference`); the other SDK worker processes
(reading, fetching, decoding, assembling, writing) never load it.
"""
