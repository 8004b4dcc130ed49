"""Files (no nnU-Net): atomic writes and output sets, the restricted unpickler, integrity checks, content
fingerprints, unlabeled sources from their headers.
"""
