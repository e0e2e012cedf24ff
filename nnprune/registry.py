"""A tiny name -> object registry shared by the method presets and the task adapters."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from nnprune.errors import NNPruneError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names are refused with the list of known ones.

    Example::

        nnprune.METHODS.names()          # ['block', 'dense', 'hybrid', ...]
        nnprune.METHODS.get("struct").summary
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise NNPruneError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
