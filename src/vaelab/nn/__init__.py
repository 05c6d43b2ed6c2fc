"""Deterministic trunks for encoders and decoders."""

from vaelab.nn.trunks import ACTIVATIONS, MLP, ConvDecoder, ConvEncoder, activation

__all__ = ["ACTIVATIONS", "MLP", "ConvDecoder", "ConvEncoder", "activation"]
