"""Trimaps made from other guides: from an object mask (from_mask) and, for test sets, from a
ground-truth alpha (from_alpha)."""
