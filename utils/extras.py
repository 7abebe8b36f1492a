"""Optional packages, each installed by its own requirements-<extra>.txt: imported only where a
feature uses them, and where one is missing the feature says in one line how to install it."""
import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    pass


def import_extra(module: str, missing_message: str) -> ModuleType:
    """The module, or MissingExtraError(missing_message) when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(missing_message) from None
