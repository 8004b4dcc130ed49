"""Transferring pretrained weights into a target network (no nnU-Net): the tensor rules, the report and its
policy, the transfer itself, and the fine-tuning warm-up.
"""
