from networks.generator import Generator, build_generator, set_gca_block

__all__ = ["Generator", "build_generator", "set_gca_block"]
