"""Marks put in by other people's training loops: a PyTorch Lightning callback
(``nnmark.integrations.lightning``, extra ``lightning``) and a Hugging Face Trainer
(``nnmark.integrations.transformers``, extra ``transformers``). Each imports its framework when
imported itself, so this package costs nothing until one is used."""
