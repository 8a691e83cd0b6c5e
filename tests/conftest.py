import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def grads(module_or_tensors):
    """Gradients of a module's parameters, in order."""
    return [p.grad for p in module_or_tensors.parameters()]
