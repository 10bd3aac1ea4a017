"""data/preprocess"""
