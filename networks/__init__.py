from networks.generator import Generator, build_generator

__all__ = ["Generator", "build_generator"]
