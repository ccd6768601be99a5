"""The training loop, batched inference, patches, device and precision, calibration, the torchrun world."""
