"""Datasets and data tools for training and testing."""
