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

from collections.abc import Callable, Mapping
from typing import Any

from .base import VERIFIERS, Verifier
from .choice import ChoiceVerifier  # noqa: F401 - defining it registers "choice"
from .math import MathVerifier
from .simple import CallableVerifier, ExactMatchVerifier, RegexVerifier  # noqa: F401 - registers "exact", "regex"


class UntrustedVerifierError(ValueError):
    """A verifier spec names code to import (a callable verifier's ``"module:qualname"``) without ``trust_remote_code``."""


def check_verifier_trust(spec: Any, *, trust_remote_code: bool, source: str | None = None) -> None:
    """Refuse, before anything is imported, a verifier dict that names a function to import, unless trusted.

    A dict ``{"name": "callable", "callable": "module:qualname"}`` comes from a file (a downloaded
    ``rewriter_config.json``, a YAML config, a ``--verifier`` JSON): importing ``module`` runs its code
    and the gate then calls ``qualname`` on every candidate, e.g. ``pydoc:pipepager`` would pipe the
    expert answer through a shell. Such an entry is built only with ``trust_remote_code=True``. A function
    object passed from Python (``get_verifier(my_fn)``, ``CallableVerifier(my_fn)``) is the user's own
    code and needs no opt-in; neither does any other spec (names and options of built-in verifiers).

    Args:
        spec: Anything :func:`get_verifier` accepts.
        trust_remote_code: The caller's opt-in.
        source: Where the spec was read (a file, a repository), named in the error.

    Raises:
        UntrustedVerifierError: Naming the entry and how to opt in.
    """
    if trust_remote_code or not isinstance(spec, Mapping):
        return
    name = spec.get("name")
    cls = (VERIFIERS.get(name) or VERIFIERS.get(name.lower())) if isinstance(name, str) else None
    # "fn" too: CallableVerifier(fn="module:qualname") imports a string given under its own argument name.
    path = spec.get("callable") if spec.get("callable") is not None else spec.get("fn")
    if cls is None or not issubclass(cls, CallableVerifier) or not isinstance(path, str):
        return
    where = f" in {source}" if source else ""
    raise UntrustedVerifierError(
        f"The verifier entry {dict(spec)!r}{where} names the function {path!r}: building it would import and run "
        "that code. Nothing was imported. If you trust where this entry comes from, opt in with "
        "trust_remote_code=True (Rewriter.from_pretrained(..., trust_remote_code=True), Rewriter(..., "
        "trust_remote_code=True), the trainers' config field trust_remote_code, or --trust_remote_code / "
        "--trust-remote-code on the command line); or pass the function itself from Python: "
        "get_verifier(my_function)."
    )


def get_verifier(
    spec: str | dict[str, Any] | Verifier | Callable[..., Any] | None = "math",
    *,
    trust_remote_code: bool = False,
    **options: Any,
) -> Verifier:
    """Build a verifier from a name, a ``to_dict()`` dict, an instance or a function.

    Args:
        spec: ``"math"``, ``"choice"``, ``"exact"``, ``"regex"``, ``"callable"`` (or the ``name`` of
            any registered :class:`Verifier` subclass); a dict from :meth:`Verifier.to_dict`; a
            :class:`Verifier` (returned as is); a Verifier subclass; a plain callable (wrapped in
            :class:`CallableVerifier`); or None for ``MathVerifier()``.
        trust_remote_code: Allow a dict naming a function to import (``{"name": "callable", "callable":
            "module:qualname"}``, what a file holds); without it such a dict raises
            :class:`UntrustedVerifierError` before anything is imported (see :func:`check_verifier_trust`).
            A function object needs no opt-in.
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
    if isinstance(spec, Mapping):
        config = {**spec, **options}
        check_verifier_trust(config, trust_remote_code=trust_remote_code)
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
