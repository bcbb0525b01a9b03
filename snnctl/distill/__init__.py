"""Distillation pipelines above training and language models: preparing teacher logits."""
