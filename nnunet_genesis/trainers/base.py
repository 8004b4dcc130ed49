"""What every Genesis trainer shares: a crashing training exits at once instead of hanging, and
``plain_network`` (the network inside a DDP wrapper).

When an exception leaves nnU-Net's training loop, batchgenerators' augmentation worker processes
are still running and blocked on their queues; the interpreter then waits on them at exit, and a
failed ``nnUNet_train`` can sit for minutes before its error is seen (found while testing the
whole-task pipeline). Stopping the generators before re-raising lets the error surface at once.
"""


def stop_augmentation_workers(trainer):
    """Stop the trainer's batchgenerators workers, if it started any (never raises)."""
    for name in ("tr_gen", "val_gen"):
        generator = getattr(trainer, name, None)
        finish = getattr(generator, "_finish", None)
        if finish is not None:
            try:
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
        except BaseException:
            stop_augmentation_workers(self)
            raise
