"""Names a package loads on first use (PEP 562), so that importing one part of keras-sam pulls in
only what that part needs."""

import importlib


def lazy_exports(package, exports):
    """`__getattr__` and `__dir__` for `package` (its __name__), loading each of `exports`
    ({name: module}) from its module when first asked for, then keeping it in the package."""

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__():
        return sorted(set(vars(importlib.import_module(package))) | set(exports))

    return __getattr__, __dir__
