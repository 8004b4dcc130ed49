"""What both v2 Genesis trainers share.
"""


def plain_network(network):
    """The module inside DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    network = getattr(network, "module", network)
    return getattr(network, "_orig_mod", network)
