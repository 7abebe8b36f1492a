"""One image through a network inside its family's recipe, with test-time augmentation (predict), and
the trimap and image conversions around it (preprocess)."""
