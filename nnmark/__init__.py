"""nnmark: watermark neural networks, verify ownership with a stated error rate, and measure how
each watermark survives removal attacks."""
__version__ = "0.1.0"
