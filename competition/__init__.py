"""Medical Segmentation Decathlon: task table, submission builder/validator, whole-task pipeline, demo."""
