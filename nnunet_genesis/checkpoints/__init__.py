"""What a checkpoint is and what travels with it (no nnU-Net): reading checkpoint files, nnssl's adaptation
plan, the pretraining record written beside it.
"""
