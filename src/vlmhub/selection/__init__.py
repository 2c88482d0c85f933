"""vlmhub.selection"""
