"""One check of every gin binding against the type annotation of the argument it binds, so that
`wide_resnet.depth = 'ten'` is `wide_resnet.depth must be an integer, got 'ten'` before any
work, not a Python error from deep inside the model.

An int is accepted where a float is annotated, a list where a tuple is (gin writes both); a
macro (`%NAME`) is checked by its value; a reference (`@name()`) by what it gives: an instance
of its class, or what its function's return annotation says (anything, unannotated), and a
callable for `@name`, which no data annotation accepts; an annotation this check cannot read (a
callable's signature, a generic of our own) accepts anything.
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
            if param not in hints:
                continue
            expected = describe(hints[param])
            if expected != _ANY and not conforms(value, hints[param]):
                name = f"{scope}/{configurable.name}" if scope else configurable.name
                given = _macro_value(value)
                shown = repr(value) if given is value else f"{value!r} = {given!r}"
                raise UserError(f"{name}.{param} must be {expected}, got {shown}")


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


def _macro_value(reference: gin.config.ConfigurableReference):
    """A macro's or constant's value; `reference` itself where it is not one, or is undefined
    (gin names the undefined one where it is used)."""
    seen = set()
    while isinstance(reference, gin.config.ConfigurableReference) and reference not in seen:
        seen.add(reference)
        name = reference.scoped_selector.rsplit("/", 1)[0]
        if reference.configurable.wrapped is gin.config.macro:
            if (name, "gin.macro") not in gin.config._CONFIG:  # noqa: SLF001
                return reference
            reference = gin.config._CONFIG[(name, "gin.macro")].get("value", reference)  # noqa: SLF001
        elif reference.configurable.wrapped is gin.config._retrieve_constant:  # noqa: SLF001
            if name not in gin.config._CONSTANTS:  # noqa: SLF001
                return reference
            reference = gin.config._CONSTANTS[name]  # noqa: SLF001
        else:
            return reference
    return reference


def _reference_conforms(reference: gin.config.ConfigurableReference, hint) -> bool:
    if not reference.evaluate:
        return False  # a callable
    wrapped = reference.configurable.wrapped
    if inspect.isclass(wrapped):
        return _type_conforms(wrapped, hint)
    try:
        given = typing.get_type_hints(wrapped).get("return")
    except Exception:  # noqa: BLE001  as in `annotations`
        given = None
    if given is None or describe(given) == _ANY:
        return True
    return any(_type_conforms(typing.get_origin(option) or option, hint)
               for option in _union_args(given) or (given,))


def _type_conforms(given: type, hint) -> bool:
    """An instance of `given` may conform to `hint` (its items are not known)."""
    options = _union_args(hint)
    if options is not None:
        return any(_type_conforms(given, option) for option in options)
    origin = typing.get_origin(hint) or hint
    if origin is float and given is int:
        return True
    if origin in (tuple, list, collections.abc.Sequence):
        return given in (tuple, list)
    return inspect.isclass(origin) and issubclass(given, origin) and not (
        origin is int and given is bool)


def conforms(value, hint) -> bool:
    value = _macro_value(value)
    if isinstance(value, gin.config.ConfigurableReference):
        return _reference_conforms(value, hint)
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
