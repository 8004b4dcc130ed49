"""Which networks' ``-pretrained_weights`` our trainers load themselves: the registry between the two sides.

Our fine-tuning trainers register their network here (``initialize_network``); the patched
``nnunet.run.load_pretrained_weights`` of :mod:`nnunet_genesis.integration` asks here which handler, if
any, loads the weights for the network nnU-Net hands it.  A module of its own so that the trainers and the
import hook both depend on it and not on each other.

Standard library only: the import hook is loaded at every interpreter start.
"""

# A WeakKeyDictionary (a network's life is the trainer's; nothing here keeps either alive), made on
# first use so that start-up does not import weakref.
_handlers = {}


def register_pretrained_weights_handler(network, handler):
    """Route stock ``-pretrained_weights`` for ``network`` to ``handler(fname)``."""
    global _handlers
    if not _handlers:
        import weakref
        _handlers = weakref.WeakKeyDictionary()
    _handlers[network] = handler


def pretrained_weights_handler(network):
    """The handler registered for ``network``, or for the module inside it (nnUNet_train_DDP passes the
    DistributedDataParallel wrapper; the trainer registered its module); None when there is none."""
    inner = getattr(network, "module", None)
    return _handlers.get(network) or (_handlers.get(inner) if inner is not None else None)
