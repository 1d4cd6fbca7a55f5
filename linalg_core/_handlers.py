"""Handlers keyed by config type, shared by the config registries (adapters' initialisers,
quantization's quantizers): one entry per config class, found for a config through its class's
MRO, then through virtual subclasses (``ABC.register``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

E = TypeVar("E")


class Handlers(Generic[E]):
    """Entries of type ``E`` (a handler, or a record holding one) per subclass of ``base``.

    Args:
        base: the config base class every key must subclass.
        noun: what a handler is called in errors (``"quantizer"``).
        hint: how a config is described in the lookup's TypeError (``"a QuantConfig (...)"``).
        register_name: the public decorator's name, quoted in errors.
        handler_of: the handler held by an entry (for error messages).
    """

    def __init__(self, base: type, noun: str, hint: str, register_name: str,
                 handler_of: Callable[[E], Callable] = lambda e: e):
        self.base, self.noun, self.hint, self.register_name = base, noun, hint, register_name
        self.handler_of = handler_of
        self._entries: dict[type, E] = {}

    def __iter__(self) -> Iterator[type]:
        return iter(self._entries)

    def copy(self) -> Handlers[E]:
        """An independent registry with the same entries (tests register into a copy)."""
        new = Handlers(self.base, self.noun, self.hint, self.register_name, self.handler_of)
        new._entries = dict(self._entries)
        return new

    def check_type(self, config_type) -> type:
        """``config_type`` if it is a subclass of ``base`` (real or registered), else TypeError."""
        if not (isinstance(config_type, type) and issubclass(config_type, self.base)):
            raise TypeError(f"config_type must be a subclass of {self.base.__name__}, got {config_type!r}")
        return config_type

    def decorator(self, config_type: type, make: Callable[[Callable], E], *, replace: bool) -> Callable:
        """The decorator storing ``make(handler)`` for ``config_type`` (ValueError when one is
        there already, unless ``replace``)."""
        if config_type in self._entries and not replace:
            raise ValueError(f"{config_type.__name__} already has a handler "
                             f"({self.handler_of(self._entries[config_type]).__qualname__}); pass replace=True to "
                             "replace it")

        def register(handler):
            if not callable(handler):
                raise TypeError(f"the handler must be callable, got {type(handler).__name__}")
            self._entries[config_type] = make(handler)
            return handler

        return register

    def lookup(self, config) -> E:
        """The entry for ``config``'s class or its nearest registered base (TypeError when
        ``config`` is no config of ``base`` or nothing is registered for it)."""
        if not isinstance(config, self.base):
            raise TypeError(f"config must be {self.hint}, got {type(config).__name__}")
        for klass in type(config).__mro__:
            if klass in self._entries:
                return self._entries[klass]
        for klass, entry in self._entries.items():  # virtual subclasses (registered with ABC.register)
            if issubclass(type(config), klass):
                return entry
        name = type(config).__name__
        raise TypeError(f"no {self.noun} is registered for {name}; register one with @{self.register_name}({name})")
