"""vlmhub: select and reuse pretrained vision-language models with Model Label Learning (MLL)."""

__version__ = "0.1.0"
