# Copyright 2025 The hf-patchdist Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Building a verifier from a name, a ``to_dict()`` dict, an instance or a function.

The classes themselves are registered in :data:`~hf_patchdist.verifiers.base.VERIFIERS` when they are
defined; importing this module imports every built-in verifier, so all of them are known here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import VERIFIERS, Verifier
from .choice import ChoiceVerifier  # noqa: F401 - defining it registers "choice"
from .math import MathVerifier
from .simple import CallableVerifier, ExactMatchVerifier, RegexVerifier  # noqa: F401 - registers "exact", "regex"


def get_verifier(
    spec: str | dict[str, Any] | Verifier | Callable[..., Any] | None = "math", **options: Any
) -> Verifier:
    """Build a verifier from a name, a ``to_dict()`` dict, an instance or a function.

    Args:
        spec: ``"math"``, ``"choice"``, ``"exact"``, ``"regex"``, ``"callable"`` (or the ``name`` of
            any registered :class:`Verifier` subclass); a dict from :meth:`Verifier.to_dict`; a
            :class:`Verifier` (returned as is); a Verifier subclass; a plain callable (wrapped in
            :class:`CallableVerifier`); or None for ``MathVerifier()``.
        **options: Constructor options, e.g. ``get_verifier("regex", pattern=r"#### (\\w+)")``;
            for a dict they override its values.

    Returns:
        A :class:`Verifier`.

    Example:
        ```python
        verifier = get_verifier("math", strict=True)
        assert get_verifier(verifier.to_dict()) == verifier
        ```
    """
    if isinstance(spec, Verifier):
        if options:
            raise ValueError("options cannot be combined with a Verifier instance; build a new one instead")
        return spec
    if spec is None:
        return MathVerifier(**options)
    if isinstance(spec, type) and issubclass(spec, Verifier):
        return spec(**options)
    if isinstance(spec, str):
        return _verifier_class(spec)(**options)
    if isinstance(spec, dict):
        config = {**spec, **options}
        name = config.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"a verifier dict needs a 'name' (one of {sorted(VERIFIERS)}), got {spec!r}")
        cls = _verifier_class(name)
        if cls is CallableVerifier:
            path = config.pop("callable", None)
            if path is None:
                raise ValueError(
                    "this callable verifier cannot be rebuilt: its function is not importable "
                    "(a lambda or a local function); pass the function itself to get_verifier"
                )
            config["fn"] = path
        return cls(**config)
    if callable(spec):
        return CallableVerifier(spec, **options)
    raise TypeError(f"cannot build a verifier from {type(spec).__name__}")


def _verifier_class(name: str) -> type[Verifier]:
    cls = VERIFIERS.get(name) or VERIFIERS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown verifier {name!r}; known: {', '.join(sorted(VERIFIERS))}")
    return cls
