"""One check of every gin binding against the type annotation of the argument it binds, so that
`wide_resnet.depth = 'ten'` is `wide_resnet.depth must be an integer, got 'ten'` before any
work, not a Python error from deep inside the model.

An int is accepted where a float is annotated, a list where a tuple is (gin writes both); a
reference (`@name`, `%MACRO`) is checked where it is used, not here; an annotation this check
cannot read (a callable's signature, a generic of our own) accepts anything.
"""
import collections.abc
import inspect
import types
import typing

import gin
import gin.config

from harness.core.errors import UserError

_ANY = "anything"  # an annotation this check does not read


def check_bindings() -> None:
    """Raise UserError naming the first binding whose value does not fit its annotation."""
    for (scope, selector), params in gin.config._CONFIG.items():  # noqa: SLF001  gin has no API
        configurable = gin.config._REGISTRY.get_match(selector)  # noqa: SLF001
        if configurable is None:
            continue
        hints = annotations(configurable.wrapped)
        for param, value in params.items():
            if param not in hints or isinstance(value, gin.config.ConfigurableReference):
                continue
            expected = describe(hints[param])
            if expected != _ANY and not conforms(value, hints[param]):
                name = f"{scope}/{configurable.name}" if scope else configurable.name
                raise UserError(f"{name}.{param} must be {expected}, got {value!r}")


def annotations(wrapped) -> dict:
    target = wrapped.__init__ if inspect.isclass(wrapped) else wrapped
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001  an annotation naming what its module does not import
        return {}


def _union_args(hint) -> tuple | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def describe(hint) -> str:
    """The annotation in words ('an integer', 'None or a number'); `_ANY` if unread."""
    options = _union_args(hint)
    if options is not None:
        words = [describe(option) for option in options]
        return _ANY if _ANY in words else " or ".join(words)
    origin = typing.get_origin(hint) or hint
    return {int: "an integer", float: "a number", bool: "True or False", str: "a string",
            tuple: "a tuple", list: "a list", dict: "a dict", type(None): "None",
            collections.abc.Sequence: "a tuple or list"}.get(origin, _ANY)


def conforms(value, hint) -> bool:
    options = _union_args(hint)
    if options is not None:
        return any(conforms(value, option) for option in options)
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (tuple, list)):
            return False
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis or origin is not tuple and len(args) == 1:
            return all(conforms(item, args[0]) for item in value)
        return True
    if origin is type(None):
        return value is None
    if origin in (str, dict):
        return isinstance(value, origin)
    return True
