"""vlmhub.service"""
