"""Tests of get_verifier, the registry and serialisation (hf_patchdist.verifiers.registry)."""

from __future__ import annotations

import json
import re

import pytest
from .verifier_cases import ends_with_reference

from hf_patchdist.verifiers import (
    VERIFIERS,
    CallableVerifier,
    ChoiceVerifier,
    ExactMatchVerifier,
    MathVerifier,
    RegexVerifier,
    VerificationResult,
    Verifier,
    get_verifier,
)


@pytest.mark.parametrize(
    "verifier",
    [
        MathVerifier(),
        MathVerifier(
            strict=True,
            equation_rel_tol=0.01,
            min_reasoning_steps=2,
            require_derived_answer=False,
            min_length_ratio=0.5,
            min_intermediate_recall=0.75,
        ),
        MathVerifier(meta_phrases=["as instructed"]),
        MathVerifier(max_question_copy=None, reject_repeated_lines=False, reject_repeated_equations=False),
        ChoiceVerifier(letters="ABCD", strict=True, max_question_copy=0.3),
        ExactMatchVerifier(),
        RegexVerifier(r"#### (\w+)", flags=re.IGNORECASE),
        CallableVerifier(ends_with_reference, strict=True),
    ],
    ids=lambda v: v.name,
)
def test_get_verifier_round_trip(verifier):
    config = verifier.to_dict()
    assert config["name"] == verifier.name
    rebuilt = get_verifier(json.loads(json.dumps(config)), trust_remote_code=True)  # callable: an import path
    assert type(rebuilt) is type(verifier)
    assert rebuilt == verifier
    assert rebuilt.to_dict() == config


def test_get_verifier_specs():
    assert get_verifier() == MathVerifier()
    assert get_verifier(None) == MathVerifier()
    assert get_verifier("math", strict=True) == MathVerifier(strict=True)
    assert get_verifier("math") != MathVerifier(strict=True)
    assert get_verifier({"name": "math"}, strict=True).strict
    verifier = ChoiceVerifier()
    assert get_verifier(verifier) is verifier
    assert isinstance(get_verifier("exact"), ExactMatchVerifier)
    assert isinstance(get_verifier("regex", pattern=r"(\d+)"), RegexVerifier)
    assert isinstance(get_verifier(ExactMatchVerifier), ExactMatchVerifier)
    with pytest.raises(ValueError, match="unknown verifier"):
        get_verifier("nonsense")
    with pytest.raises(ValueError):
        get_verifier({"strict": True})
    with pytest.raises(ValueError):
        get_verifier(verifier, strict=True)
    with pytest.raises(TypeError):
        get_verifier(42)


def test_custom_verifier_registers_itself():
    class YesNoVerifier(Verifier):
        name = "test_yes_no"

        def _check(self, text, reference, question):
            ok = text.lower().startswith(reference.lower())
            return VerificationResult(ok, "" if ok else "wrong_final_answer", text)

    try:
        verifier = get_verifier("test_yes_no")
        assert isinstance(verifier, YesNoVerifier)
        assert verifier("Yes, it does.", "yes").passed
        assert verifier("No.", "yes").reason == "wrong_final_answer"
        assert get_verifier(verifier.to_dict()) == verifier
    finally:
        VERIFIERS.pop("test_yes_no", None)


# ---------------------------------------------------------------------------------------------- trust_remote_code


@pytest.mark.parametrize("key", ["callable", "fn"])
def test_a_callable_named_in_a_dict_is_refused_before_anything_is_imported(probe_module, key):
    from hf_patchdist.verifiers import UntrustedVerifierError

    for path in ("os:system", "pydoc:pipepager", probe_module.path):
        with pytest.raises(UntrustedVerifierError, match=f"{path}.*Nothing was imported.*trust_remote_code=True"):
            get_verifier({"name": "callable", key: path})
    with pytest.raises(UntrustedVerifierError):
        get_verifier({"name": "CALLABLE", key: probe_module.path, "strict": True})
    assert not probe_module.imported()


def test_a_trusted_dict_or_a_python_function_builds_the_callable_verifier(probe_module):
    verifier = get_verifier({"name": "callable", "callable": probe_module.path}, trust_remote_code=True)
    assert probe_module.imported()
    assert isinstance(verifier, CallableVerifier) and verifier.to_dict()["callable"] == probe_module.path
    # A function object is the user's own code: no opt-in, and its dict round-trips once trusted.
    python = get_verifier(ends_with_reference)
    assert python("the answer is paris", "paris").passed
    assert CallableVerifier("verifiers.verifier_cases:ends_with_reference").fn is ends_with_reference
    # Built-in verifiers never need it.
    assert get_verifier({"name": "regex", "pattern": "x"}) == RegexVerifier("x")
