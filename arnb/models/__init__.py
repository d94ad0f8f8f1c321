"""The book's models, one readable file per family, all following :mod:`arnb.protocol`."""

from .aiqn import AIQN, AIQNConfig
from .any_order import AnyOrderConfig, AnyOrderNet
from .fvsbn import FVSBN
from .gpt import GPT, GPTConfig
from .handwriting_synthesis import HandwritingSynthesis, SynthesisConfig
from .hmm import HMM, HMMConfig
from .joint_table import JointTable
from .made import MADE, MADEConfig
from .markov_chain import MarkovChain
from .mdn import (
    MDN,
    AutoregressiveMDN2D,
    MDN2DConfig,
    MDNConfig,
    MSERegressor,
    QuantileConfig,
    QuantileNet,
)
from .ngram import NGramLM
from .pixelcnn import GatedPixelCNN, PixelCNN, PixelCNNConfig
from .rnn_lm import CharRNN, RNNConfig
from .rnn_mdn import RNNMDN, ContextFreeMixture, RNNMDNConfig

__all__ = [
    "AnyOrderConfig",
    "AnyOrderNet",
    "AIQN",
    "FVSBN",
    "GPT",
    "HMM",
    "MADE",
    "MDN",
    "RNNMDN",
    "AIQNConfig",
    "AutoregressiveMDN2D",
    "CharRNN",
    "ContextFreeMixture",
    "GPTConfig",
    "GatedPixelCNN",
    "HMMConfig",
    "HandwritingSynthesis",
    "JointTable",
    "MADEConfig",
    "MDN2DConfig",
    "MDNConfig",
    "MSERegressor",
    "MarkovChain",
    "NGramLM",
    "PixelCNN",
    "PixelCNNConfig",
    "QuantileConfig",
    "QuantileNet",
    "RNNConfig",
    "RNNMDNConfig",
    "SynthesisConfig",
]
