"""Pretraining by restoration (no nnU-Net): recipes, loss and output form, validation patches and their
per-distortion scores, the diagnostics schedule, previews, and the hook bodies both trainer families call.
"""
