"""arnb: the helper package of the executable book on autoregressive generative models."""

from .config import describe, get_device, get_profile, pick, print_record, seed_everything, setup
from .metrics import bits_per_dim, nats_to_bits, perplexity

__version__ = "0.1.0"

__all__ = [
    "bits_per_dim",
    "describe",
    "get_device",
    "get_profile",
    "nats_to_bits",
    "perplexity",
    "pick",
    "print_record",
    "seed_everything",
    "setup",
]
