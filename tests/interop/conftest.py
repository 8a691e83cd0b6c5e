"""Fixtures shared by the interop tests: ``tv``, torchvision's video Swin module run from its wheel's own files."""

from tests.interop.test_torchvision import tv  # noqa: F401
