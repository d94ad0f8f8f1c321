"""The book's models, one readable file per family."""

from .markov_chain import MarkovChain

__all__ = ["MarkovChain"]
