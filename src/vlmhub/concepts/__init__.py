"""vlmhub.concepts"""
