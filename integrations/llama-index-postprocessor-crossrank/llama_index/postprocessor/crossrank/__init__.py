from llama_index.postprocessor.crossrank.base import CrossrankRerank

__all__ = ["CrossrankRerank"]
