"""spacetime and the video models people already have: converters from transformers, torchvision and
diffusers models to spacetime models with the same outputs, and spacetime's attention inside theirs.

Install the optional libraries with ``pip install "spacetime[interop]"`` (transformers; diffusers is
a core dependency). Nothing here is imported by the rest of the library.
"""
