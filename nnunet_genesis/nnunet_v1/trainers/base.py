"""What every Genesis trainer shares: a crashing training exits at once instead of hanging, a loss that
becomes NaN/inf stops the run with NonFiniteLossError instead of saving a NaN model, and
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


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run stops instead of saving a NaN network."""


def check_finite_loss(trainer, loss, do_backprop):
    """Raise NonFiniteLossError (after logging it) when ``loss`` is NaN or infinite.

    Checked after every iteration, before the epoch ends, so that nnU-Net's on_epoch_end never saves a
    checkpoint (model_latest, model_best, model_final_checkpoint) of a network whose weights the
    non-finite gradients have just made NaN. With mixed precision, nnU-Net's GradScaler skips steps with
    inf/NaN *gradients*, but a non-finite *loss* means the forward pass itself has diverged.
    """
    import numpy as np
    value = np.asarray(loss, dtype=np.float64)
    if np.all(np.isfinite(value)):
        return
    message = ("training stopped: the %s loss became %s at epoch %d, iteration %d; the network diverged (or a "
               "batch holds NaN/inf); no checkpoint is saved from this run after this point (output folder %s)"
               % ("training" if do_backprop else "validation", float(value.ravel()[0]), trainer.epoch,
                  getattr(trainer, "_genesis_iteration", 0), getattr(trainer, "output_folder", "?")))
    try:
        trainer.print_to_log_file(message)
    except Exception:   # the error below is the one to report
        pass
    raise NonFiniteLossError(message)


class GenesisTrainerBase:
    def run_iteration(self, data_generator, do_backprop=True, run_online_evaluation=False):
        loss = super().run_iteration(data_generator, do_backprop, run_online_evaluation)
        self._genesis_iteration = getattr(self, "_genesis_iteration", 0) + 1
        check_finite_loss(self, loss, do_backprop)
        return loss

    @property
    def plain_network(self):
        """The Generic_UNet, also when nnU-Net's DDP trainer has wrapped it in DistributedDataParallel."""
        return getattr(self.network, "module", self.network)

    def run_training(self):
        try:
            return super().run_training()
        finally:
            stop_augmentation_workers(self)
