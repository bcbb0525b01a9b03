"""Spiking language models: tokenizers, corpora, the spiking SSM and its twins, training, generation, chat."""
