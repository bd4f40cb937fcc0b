"""Datasets and their loaders: the embedded digits, ImageFolder and ImageNet (Kaggle layout)."""
