"""Trainers of the demo, found by the stock nnUNet_train through nnUNet_extTrainer (the demo points it at
this folder: the same mechanism a user's own trainers use)."""
