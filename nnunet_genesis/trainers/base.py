"""What every Genesis trainer shares: a crashing training exits at once instead of hanging, and
``plain_network`` (the network inside a DDP wrapper).

When an exception leaves nnU-Net's training loop, batchgenerators' augmentation worker processes
are still running and blocked on their queues; the interpreter then waits on them at exit, and a
failed ``nnUNet_train`` can sit for minutes before its error is seen (found while testing the
whole-task pipeline). Stopping the generators before re-raising lets the error surface at once.

A training that ends normally stops them too, gracefully and with time to spare. Otherwise they
are stopped by ``MultiThreadedAugmenter.__del__`` at interpreter exit, which gives the workers 2 s
and then terminates them; a worker terminated while writing a batch into its pipe leaves half a
message there, and the final drain in batchgenerators' ``_finish`` then blocks on it for ever
(seen: ``nnUNet_train`` finished, validated and never exited, on a loaded 2-core machine).
"""


GRACEFUL_STOP_SECONDS = 60  # for the workers to drain their queues and exit before being terminated


def stop_augmentation_workers(trainer, timeout=GRACEFUL_STOP_SECONDS):
    """Stop the trainer's batchgenerators workers, if it started any (never raises)."""
    for name in ("tr_gen", "val_gen"):
        generator = getattr(trainer, name, None)
        finish = getattr(generator, "_finish", None)
        if finish is not None:
            try:
                try:
                    finish(timeout=timeout)
                except TypeError:  # batchgenerators versions whose _finish takes no timeout
                    finish()
            except Exception:  # shutting down after another error: that error is the one to report
                pass


class GenesisTrainerBase:
    @property
    def plain_network(self):
        """The Generic_UNet, also when nnU-Net's DDP trainer has wrapped it in DistributedDataParallel."""
        return getattr(self.network, "module", self.network)

    def run_training(self):
        try:
            return super().run_training()
        finally:
            stop_augmentation_workers(self)
